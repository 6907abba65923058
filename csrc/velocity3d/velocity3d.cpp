#include "velocity3d.h"

#include "../common/checks.h"

namespace vmdm {

void check_velocity3d_inputs(const char* op, const at::Tensor& joints, const at::Tensor& target,
                             const at::Tensor& weights) {
  check_joints(joints, op);
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  check_shape(target, op, "target", {B, T, J, 3});
  check_like(target, joints, op, "target");
  check_shape(weights, op, "weights", {B, T, J});
  check_like(weights, joints, op, "weights");
}

at::Tensor velocity3d_fwd(const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights) {
  check_velocity3d_inputs("velocity3d_fwd", joints, target, weights);
  if (joints.is_cuda()) {
#ifdef WITH_CUDA
    return velocity3d_fwd_cuda(joints.contiguous(), target.contiguous(), weights.contiguous());
#else
    TORCH_CHECK(false, "velocity3d_fwd: joints are on ", joints.device(),
                " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(joints.is_cpu(), "velocity3d_fwd: unsupported device ", joints.device());
  return velocity3d_fwd_cpu(joints.contiguous(), target.contiguous(), weights.contiguous());
}

std::tuple<at::Tensor, at::Tensor> velocity3d_bwd(const at::Tensor& grad, const at::Tensor& joints,
                                                  const at::Tensor& target, const at::Tensor& weights,
                                                  bool need_target) {
  const char* op = "velocity3d_bwd";
  check_velocity3d_inputs(op, joints, target, weights);
  check_shape(grad, op, "grad", {joints.size(0)});
  TORCH_CHECK_VALUE(grad.device() == joints.device(), op, ": grad: expected device ", joints.device(), ", got ",
                    grad.device());
  auto g = grad.to(joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat).contiguous();
  if (joints.is_cuda()) {
#ifdef WITH_CUDA
    return velocity3d_bwd_cuda(g, joints.contiguous(), target.contiguous(), weights.contiguous(), need_target);
#else
    TORCH_CHECK(false, "velocity3d_bwd: joints are on ", joints.device(),
                " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(joints.is_cpu(), "velocity3d_bwd: unsupported device ", joints.device());
  return velocity3d_bwd_cpu(g, joints.contiguous(), target.contiguous(), weights.contiguous(), need_target);
}

}  // namespace vmdm
