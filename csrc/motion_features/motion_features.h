// HumanML3D motion features from joint positions, one fused forward (no
// backward: training uses them as targets). Math: vmdm_kernels/ref/motion_features.py.
#pragma once

#include <torch/types.h>

#include <optional>

#include "../common/feature_math.h"

namespace vmdm {

// Bounds the smoothing window (radius 4 sigma) so a row's cost stays bounded.
constexpr double kMaxFacingSigma = 1000.0;

// joints [B, T, J, 3], lengths [B] (int64, any device; clamped to [2, T]),
// bones in parent-first order (child / parent / frame joint or -1, J-1 each), rest [3J],
// facing [4], feet [<= 8], the facing's Gaussian sigma in frames (0: none), optional
// mean / std [D]. Returns [B, T-1, D] in joints' dtype.
at::Tensor motion_features_fwd(const at::Tensor& joints, const at::Tensor& lengths, at::IntArrayRef bone_child,
                               at::IntArrayRef bone_parent, at::IntArrayRef bone_frame, at::ArrayRef<double> rest,
                               at::IntArrayRef facing, at::IntArrayRef feet, double feet_threshold,
                               double facing_sigma, const std::optional<at::Tensor>& mean,
                               const std::optional<at::Tensor>& std);

at::Tensor motion_features_fwd_cpu(const at::Tensor& joints, const at::Tensor& lengths,
                                   const FeatureSkeletonView& sk, double feet_threshold, double facing_sigma,
                                   const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std);
#ifdef WITH_CUDA
at::Tensor motion_features_fwd_cuda(const at::Tensor& joints, const at::Tensor& lengths,
                                    const FeatureSkeletonView& sk, double feet_threshold, double facing_sigma,
                                    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std);
#endif

inline int64_t motion_feature_dim(int64_t J, int64_t nfeet) { return 12 * J - 5 + nfeet; }

}  // namespace vmdm
