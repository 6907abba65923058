// recover_from_ric: HumanML3D features -> joint positions, forward and backward.
// Math: vmdm_kernels/ref/recover_from_ric.py.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace vmdm {

// features [B, T, D] with D >= 4 + 3 (J - 1); optional mean / std [D] (features are
// denormalised first). Returns joints [B, T, J, 3] in the features' dtype.
at::Tensor recover_from_ric_fwd(const at::Tensor& features, int64_t num_joints, const std::optional<at::Tensor>& mean,
                                const std::optional<at::Tensor>& std);
// dL/d(features) [B, T, D] from dL/d(joints) [B, T, J, 3]; channels the decoder does not read get zero.
at::Tensor recover_from_ric_bwd(const at::Tensor& grad, const at::Tensor& features, int64_t num_joints,
                                const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std);

at::Tensor recover_from_ric_fwd_cpu(const at::Tensor& features, int64_t J, const std::optional<at::Tensor>& mean,
                                    const std::optional<at::Tensor>& std);
at::Tensor recover_from_ric_bwd_cpu(const at::Tensor& grad, const at::Tensor& features, int64_t J,
                                    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std);
#ifdef WITH_CUDA
at::Tensor recover_from_ric_fwd_cuda(const at::Tensor& features, int64_t J, const std::optional<at::Tensor>& mean,
                                     const std::optional<at::Tensor>& std);
at::Tensor recover_from_ric_bwd_cuda(const at::Tensor& grad, const at::Tensor& features, int64_t J,
                                     const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std);
#endif

}  // namespace vmdm
