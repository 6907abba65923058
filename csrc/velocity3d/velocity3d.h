// 3D finite-difference velocity loss (MDM's geometric velocity term):
// L[b] = sum(W_t W_t+1 |dX - dY|^2) / sum(W_t W_t+1). Math: vmdm_kernels/ref/velocity3d.py.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace vmdm {

// Per-sample loss [B].
at::Tensor velocity3d_fwd(const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights);
// (grad_joints, grad_target); grad_target is empty unless requested.
std::tuple<at::Tensor, at::Tensor> velocity3d_bwd(const at::Tensor& grad, const at::Tensor& joints,
                                                  const at::Tensor& target, const at::Tensor& weights,
                                                  bool need_target);

at::Tensor velocity3d_fwd_cpu(const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights);
std::tuple<at::Tensor, at::Tensor> velocity3d_bwd_cpu(const at::Tensor& grad, const at::Tensor& joints,
                                                      const at::Tensor& target, const at::Tensor& weights,
                                                      bool need_target);
#ifdef WITH_CUDA
at::Tensor velocity3d_fwd_cuda(const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights);
std::tuple<at::Tensor, at::Tensor> velocity3d_bwd_cuda(const at::Tensor& grad, const at::Tensor& joints,
                                                       const at::Tensor& target, const at::Tensor& weights,
                                                       bool need_target);
#endif

void check_velocity3d_inputs(const char* op, const at::Tensor& joints, const at::Tensor& target,
                             const at::Tensor& weights);

}  // namespace vmdm
