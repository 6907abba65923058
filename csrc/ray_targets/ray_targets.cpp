#include "ray_targets.h"

#include "../common/checks.h"

namespace vmdm {

void check_ray_targets_inputs(const char* op, const at::Tensor& joints, const at::Tensor& keypoints,
                              const at::Tensor& camera, const std::optional<at::Tensor>& intrinsics) {
  check_joints(joints, op);
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  check_shape(keypoints, op, "keypoints", {B, T, J, 2});
  check_like(keypoints, joints, op, "keypoints");
  check_camera(camera, joints, op);
  check_intrinsics(intrinsics, joints, op);
}

at::Tensor ray_targets_fwd(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
                           const std::optional<at::Tensor>& intrinsics) {
  check_ray_targets_inputs("ray_targets_fwd", joints, keypoints, camera, intrinsics);
  std::optional<at::Tensor> intr;
  if (intrinsics.has_value()) intr = intrinsics->contiguous();
  if (joints.is_cuda()) {
#ifdef WITH_CUDA
    return ray_targets_fwd_cuda(joints.contiguous(), keypoints.contiguous(), camera.contiguous(), intr);
#else
    TORCH_CHECK(false, "ray_targets_fwd: joints are on ", joints.device(),
                " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(joints.is_cpu(), "ray_targets_fwd: unsupported device ", joints.device());
  return ray_targets_fwd_cpu(joints.contiguous(), keypoints.contiguous(), camera.contiguous(), intr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_targets_bwd(
    const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
    const std::optional<at::Tensor>& intrinsics, bool need_keypoints, bool need_camera, bool need_intrinsics) {
  const char* op = "ray_targets_bwd";
  check_ray_targets_inputs(op, joints, keypoints, camera, intrinsics);
  check_shape(grad, op, "grad", {joints.size(0), joints.size(1), joints.size(2), 3});
  TORCH_CHECK_VALUE(grad.device() == joints.device(), op, ": grad: expected device ", joints.device(), ", got ",
                    grad.device());
  TORCH_CHECK_VALUE(!need_intrinsics || intrinsics.has_value(), op,
                    ": need_intrinsics is true but no intrinsics were given");
  auto g = grad.to(joints.scalar_type()).contiguous();
  std::optional<at::Tensor> intr;
  if (intrinsics.has_value()) intr = intrinsics->contiguous();
  if (joints.is_cuda()) {
#ifdef WITH_CUDA
    return ray_targets_bwd_cuda(g, joints.contiguous(), keypoints.contiguous(), camera.contiguous(), intr,
                                need_keypoints, need_camera, need_intrinsics);
#else
    TORCH_CHECK(false, "ray_targets_bwd: joints are on ", joints.device(),
                " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(joints.is_cpu(), "ray_targets_bwd: unsupported device ", joints.device());
  return ray_targets_bwd_cpu(g, joints.contiguous(), keypoints.contiguous(), camera.contiguous(), intr,
                             need_keypoints, need_camera, need_intrinsics);
}

}  // namespace vmdm
