#include "recover_from_ric.h"

#include "../common/checks.h"

namespace vmdm {
namespace {

void check_inputs(const char* op, const at::Tensor& features, int64_t J, const std::optional<at::Tensor>& mean,
                  const std::optional<at::Tensor>& std) {
  TORCH_CHECK_VALUE(features.dim() == 3 && features.size(1) >= 1, op,
                    ": features: expected shape [B, T >= 1, D], got ", shape_str(features.sizes()));
  check_floating(features, op, "features");
  TORCH_CHECK_VALUE(J >= 1, op, ": num_joints: expected >= 1, got ", J);
  const int64_t D = features.size(2), need = 4 + 3 * (J - 1);
  TORCH_CHECK_VALUE(D >= need, op, ": features: expected at least ", need, " channels for ", J, " joints, got shape ",
                    shape_str(features.sizes()));
  TORCH_CHECK_VALUE(mean.has_value() == std.has_value(), op, ": mean and std: give both or neither");
  if (mean.has_value()) {
    check_shape(*mean, op, "mean", {D});
    check_shape(*std, op, "std", {D});
    check_like(*mean, features, op, "mean");
    check_like(*std, features, op, "std");
  }
}

std::optional<at::Tensor> contig(const std::optional<at::Tensor>& t) {
  if (!t.has_value()) return std::nullopt;
  return t->contiguous();
}

}  // namespace

at::Tensor recover_from_ric_fwd(const at::Tensor& features, int64_t num_joints, const std::optional<at::Tensor>& mean,
                                const std::optional<at::Tensor>& std) {
  const char* op = "recover_from_ric_fwd";
  check_inputs(op, features, num_joints, mean, std);
  if (features.is_cuda()) {
#ifdef WITH_CUDA
    return recover_from_ric_fwd_cuda(features.contiguous(), num_joints, contig(mean), contig(std));
#else
    TORCH_CHECK(false, op, ": features are on ", features.device(), " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(features.is_cpu(), op, ": unsupported device ", features.device());
  return recover_from_ric_fwd_cpu(features.contiguous(), num_joints, contig(mean), contig(std));
}

at::Tensor recover_from_ric_bwd(const at::Tensor& grad, const at::Tensor& features, int64_t num_joints,
                                const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std) {
  const char* op = "recover_from_ric_bwd";
  check_inputs(op, features, num_joints, mean, std);
  check_shape(grad, op, "grad", {features.size(0), features.size(1), num_joints, 3});
  TORCH_CHECK_VALUE(grad.device() == features.device(), op, ": grad: expected device ", features.device(), ", got ",
                    grad.device());
  auto g = grad.to(features.scalar_type()).contiguous();
  if (features.is_cuda()) {
#ifdef WITH_CUDA
    return recover_from_ric_bwd_cuda(g, features.contiguous(), num_joints, contig(mean), contig(std));
#else
    TORCH_CHECK(false, op, ": features are on ", features.device(), " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(features.is_cpu(), op, ": unsupported device ", features.device());
  return recover_from_ric_bwd_cpu(g, features.contiguous(), num_joints, contig(mean), contig(std));
}

}  // namespace vmdm
