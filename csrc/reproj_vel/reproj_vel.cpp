#include "reproj_vel.h"

#include "../common/camera_math.h"
#include "../common/checks.h"

namespace vmdm {

bool check_reproj_vel_inputs(const char* op, const at::Tensor& joints, const at::Tensor& keypoints,
                             const at::Tensor& camera, const at::Tensor& weights,
                             const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double z_min) {
  check_joints(joints, op);
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  check_shape(keypoints, op, "keypoints", {B, T, J, 2});
  check_like(keypoints, joints, op, "keypoints");
  check_shape(weights, op, "weights", {B, T, J});
  check_like(weights, joints, op, "weights");
  const bool per_frame = check_camera(camera, joints, op);
  check_intrinsics(intrinsics, joints, op);
  TORCH_CHECK_VALUE(depth_mode >= kDepthNone && depth_mode <= kDepthPoint, op,
                    ": depth_mode: expected 0 (none), 1 (sample) or 2 (point), got ", depth_mode);
  TORCH_CHECK_VALUE(z_min >= 0, op, ": z_min: expected a non-negative near-plane depth, got ", z_min);
  return per_frame;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> reproj_vel_fwd(
    const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera, const at::Tensor& weights,
    const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double depth_power, double z_min,
    bool with_pos, bool with_vel) {
  check_reproj_vel_inputs("reproj_vel_fwd", joints, keypoints, camera, weights, intrinsics, depth_mode, z_min);
  std::optional<at::Tensor> intr;
  if (intrinsics.has_value()) intr = intrinsics->contiguous();
  if (joints.is_cuda()) {
#ifdef WITH_CUDA
    return reproj_vel_fwd_cuda(joints.contiguous(), keypoints.contiguous(), camera.contiguous(),
                               weights.contiguous(), intr, depth_mode, depth_power, z_min, with_pos, with_vel);
#else
    TORCH_CHECK(false, "reproj_vel_fwd: joints are on ", joints.device(),
                " but the vmdm_kernels extension was built without CUDA; rebuild with VMDM_CUDA=1 "
                "(needs a CUDA toolkit and a CUDA-enabled torch), or use backend='triton' or 'reference'");
#endif
  }
  TORCH_CHECK(joints.is_cpu(), "reproj_vel_fwd: unsupported device ", joints.device());
  return reproj_vel_fwd_cpu(joints.contiguous(), keypoints.contiguous(), camera.contiguous(), weights.contiguous(),
                            intr, depth_mode, depth_power, z_min, with_pos, with_vel);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> reproj_vel_bwd(
    const at::Tensor& grad_pos, const at::Tensor& grad_vel, const at::Tensor& joints, const at::Tensor& keypoints,
    const at::Tensor& camera, const at::Tensor& weights, const std::optional<at::Tensor>& intrinsics,
    const at::Tensor& stats, int64_t depth_mode, double depth_power, double z_min, bool with_pos, bool with_vel,
    bool need_keypoints, bool need_camera, bool need_intrinsics) {
  const char* op = "reproj_vel_bwd";
  check_reproj_vel_inputs(op, joints, keypoints, camera, weights, intrinsics, depth_mode, z_min);
  const int64_t B = joints.size(0);
  check_shape(grad_pos, op, "grad_pos", {B});
  check_shape(grad_vel, op, "grad_vel", {B});
  check_shape(stats, op, "stats", {B, 3});
  TORCH_CHECK_VALUE(grad_pos.device() == joints.device() && grad_vel.device() == joints.device() &&
                        stats.device() == joints.device(),
                    op, ": grad_pos, grad_vel and stats must be on ", joints.device());
  TORCH_CHECK_VALUE(!need_intrinsics || intrinsics.has_value(), op,
                    ": need_intrinsics is true but no intrinsics were given");
  // Upstream gradients and stats are read in the accumulation dtype.
  const auto acc = joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto gp = grad_pos.to(acc).contiguous();
  auto gv = grad_vel.to(acc).contiguous();
  auto st = stats.to(acc).contiguous();
  std::optional<at::Tensor> intr;
  if (intrinsics.has_value()) intr = intrinsics->contiguous();
  if (joints.is_cuda()) {
#ifdef WITH_CUDA
    return reproj_vel_bwd_cuda(gp, gv, joints.contiguous(), keypoints.contiguous(), camera.contiguous(),
                               weights.contiguous(), intr, st, depth_mode, depth_power, z_min, with_pos, with_vel,
                               need_keypoints, need_camera, need_intrinsics);
#else
    TORCH_CHECK(false, "reproj_vel_bwd: joints are on ", joints.device(),
                " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(joints.is_cpu(), "reproj_vel_bwd: unsupported device ", joints.device());
  return reproj_vel_bwd_cpu(gp, gv, joints.contiguous(), keypoints.contiguous(), camera.contiguous(),
                            weights.contiguous(), intr, st, depth_mode, depth_power, z_min, with_pos, with_vel,
                            need_keypoints, need_camera, need_intrinsics);
}

}  // namespace vmdm
