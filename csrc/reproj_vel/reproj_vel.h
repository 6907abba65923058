// Fused depth-weighted 2D reprojection + 2D finite-difference velocity loss.
//
// Forward returns per-sample losses (pos [B], vel [B]) and stats [B, 3] =
// (depth weight w_b, sum of point weights, sum of pair weights) in the
// accumulation dtype; backward consumes the stats so it needs one pass only.
// The math is documented in vmdm_kernels/ref/reproj_vel.py.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace vmdm {

std::tuple<at::Tensor, at::Tensor, at::Tensor> reproj_vel_fwd(
    const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera, const at::Tensor& weights,
    const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double depth_power, double z_min,
    bool with_pos, bool with_vel);

// Returns (grad_joints, grad_keypoints, grad_camera, grad_intrinsics); the last
// three are empty tensors unless requested.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> reproj_vel_bwd(
    const at::Tensor& grad_pos, const at::Tensor& grad_vel, const at::Tensor& joints, const at::Tensor& keypoints,
    const at::Tensor& camera, const at::Tensor& weights, const std::optional<at::Tensor>& intrinsics,
    const at::Tensor& stats, int64_t depth_mode, double depth_power, double z_min, bool with_pos, bool with_vel,
    bool need_keypoints, bool need_camera, bool need_intrinsics);

// Backend entry points (same signatures), selected by device in reproj_vel_fwd/bwd.
std::tuple<at::Tensor, at::Tensor, at::Tensor> reproj_vel_fwd_cpu(
    const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera, const at::Tensor& weights,
    const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double depth_power, double z_min,
    bool with_pos, bool with_vel);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> reproj_vel_bwd_cpu(
    const at::Tensor& grad_pos, const at::Tensor& grad_vel, const at::Tensor& joints, const at::Tensor& keypoints,
    const at::Tensor& camera, const at::Tensor& weights, const std::optional<at::Tensor>& intrinsics,
    const at::Tensor& stats, int64_t depth_mode, double depth_power, double z_min, bool with_pos, bool with_vel,
    bool need_keypoints, bool need_camera, bool need_intrinsics);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor> reproj_vel_fwd_cuda(
    const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera, const at::Tensor& weights,
    const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double depth_power, double z_min,
    bool with_pos, bool with_vel);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> reproj_vel_bwd_cuda(
    const at::Tensor& grad_pos, const at::Tensor& grad_vel, const at::Tensor& joints, const at::Tensor& keypoints,
    const at::Tensor& camera, const at::Tensor& weights, const std::optional<at::Tensor>& intrinsics,
    const at::Tensor& stats, int64_t depth_mode, double depth_power, double z_min, bool with_pos, bool with_vel,
    bool need_keypoints, bool need_camera, bool need_intrinsics);
#endif

// Validates all inputs (shapes, dtypes, devices, options); returns whether the camera is per frame.
bool check_reproj_vel_inputs(const char* op, const at::Tensor& joints, const at::Tensor& keypoints,
                             const at::Tensor& camera, const at::Tensor& weights,
                             const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double z_min);

}  // namespace vmdm
