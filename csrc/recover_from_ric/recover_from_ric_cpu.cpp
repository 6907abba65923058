// CPU kernels: the per-clip scans in parallel over clips, the per-frame rows in
// parallel over (clip, frame).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <vector>

#include "../common/ric_math.h"
#include "../common/optional_data.h"
#include "recover_from_ric.h"

namespace vmdm {
namespace {

int64_t row_grain(int64_t J) { return std::max<int64_t>(1, 2048 / std::max<int64_t>(J, 1)); }

template <typename scalar_t>
void fwd_impl(const at::Tensor& features, int64_t J, const std::optional<at::Tensor>& mean,
              const std::optional<at::Tensor>& std, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = features.size(0), T = features.size(1), D = features.size(2);
  const auto* F = features.data_ptr<scalar_t>();
  const scalar_t* M = optional_data<scalar_t>(mean);
  const scalar_t* S = optional_data<scalar_t>(std);
  auto* X = out.data_ptr<scalar_t>();
  std::vector<acc_t> path(B * T * 3);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) ric_scan<scalar_t, acc_t>(F + b * T * D, T, D, M, S, path.data() + b * T * 3);
  });
  at::parallel_for(0, B * T, row_grain(J), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      ric_row<scalar_t, acc_t>(F + r * D, static_cast<int>(J), M, S, path.data() + 3 * r, X + r * J * 3);
  });
}

template <typename scalar_t>
void bwd_impl(const at::Tensor& grad, const at::Tensor& features, int64_t J, const std::optional<at::Tensor>& mean,
              const std::optional<at::Tensor>& std, at::Tensor& gfeat) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = features.size(0), T = features.size(1), D = features.size(2);
  const auto* G = grad.data_ptr<scalar_t>();
  const auto* F = features.data_ptr<scalar_t>();
  const scalar_t* M = optional_data<scalar_t>(mean);
  const scalar_t* S = optional_data<scalar_t>(std);
  auto* GF = gfeat.data_ptr<scalar_t>();
  std::vector<acc_t> path(B * T * 3), acc(B * T * 3);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) ric_scan<scalar_t, acc_t>(F + b * T * D, T, D, M, S, path.data() + b * T * 3);
  });
  at::parallel_for(0, B * T, row_grain(J), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      ric_row_backward<scalar_t, acc_t>(G + r * J * 3, F + r * D, static_cast<int>(J), M, S, path.data() + 3 * r,
                                        GF + r * D, acc.data() + 3 * r);
  });
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      ric_scan_backward<scalar_t, acc_t>(F + b * T * D, T, D, M, S, path.data() + b * T * 3, acc.data() + b * T * 3,
                                         GF + b * T * D);
  });
}

}  // namespace

at::Tensor recover_from_ric_fwd_cpu(const at::Tensor& features, int64_t J, const std::optional<at::Tensor>& mean,
                                    const std::optional<at::Tensor>& std) {
  auto out = at::empty({features.size(0), features.size(1), J, 3}, features.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "recover_from_ric_fwd_cpu",
                                  [&] { fwd_impl<scalar_t>(features, J, mean, std, out); });
  return out;
}

at::Tensor recover_from_ric_bwd_cpu(const at::Tensor& grad, const at::Tensor& features, int64_t J,
                                    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std) {
  auto gfeat = at::zeros_like(features);
  if (features.numel() == 0) return gfeat;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "recover_from_ric_bwd_cpu",
                                  [&] { bwd_impl<scalar_t>(grad, features, J, mean, std, gfeat); });
  return gfeat;
}

}  // namespace vmdm
