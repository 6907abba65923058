// Ray-projection pseudo-targets: for each joint, the closest point on the camera
// ray through its observed keypoint. Math: vmdm_kernels/ref/ray_targets.py.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace vmdm {

at::Tensor ray_targets_fwd(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
                           const std::optional<at::Tensor>& intrinsics);
// (grad_joints, grad_keypoints, grad_camera, grad_intrinsics); the last three are empty unless requested.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_targets_bwd(
    const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
    const std::optional<at::Tensor>& intrinsics, bool need_keypoints, bool need_camera, bool need_intrinsics);

at::Tensor ray_targets_fwd_cpu(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
                               const std::optional<at::Tensor>& intrinsics);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_targets_bwd_cpu(
    const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
    const std::optional<at::Tensor>& intrinsics, bool need_keypoints, bool need_camera, bool need_intrinsics);
#ifdef WITH_CUDA
at::Tensor ray_targets_fwd_cuda(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
                                const std::optional<at::Tensor>& intrinsics);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_targets_bwd_cuda(
    const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
    const std::optional<at::Tensor>& intrinsics, bool need_keypoints, bool need_camera, bool need_intrinsics);
#endif

void check_ray_targets_inputs(const char* op, const at::Tensor& joints, const at::Tensor& keypoints,
                              const at::Tensor& camera, const std::optional<at::Tensor>& intrinsics);

}  // namespace vmdm
