// CPU kernels, parallel over (batch, frame) rows. Row t owns the pair (t, t+1)
// in the forward pass and frame t's gradient in the backward pass.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <vector>

#include "velocity3d.h"

namespace vmdm {
namespace {

int64_t row_grain(int64_t J) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(J, 1)); }

// Weighted velocity residual of the pair starting at point index i (stride = J points to the next frame).
template <typename scalar_t, typename acc_t>
inline bool pair_residual(const scalar_t* X, const scalar_t* Y, const scalar_t* W, int64_t i, int64_t stride,
                          acc_t& pw, acc_t e[3]) {
  pw = static_cast<acc_t>(W[i]) * static_cast<acc_t>(W[i + stride]);
  if (pw == acc_t(0)) return false;
  for (int k = 0; k < 3; ++k) {
    const acc_t dx = static_cast<acc_t>(X[3 * (i + stride) + k]) - static_cast<acc_t>(X[3 * i + k]);
    const acc_t dy = static_cast<acc_t>(Y[3 * (i + stride) + k]) - static_cast<acc_t>(Y[3 * i + k]);
    e[k] = dx - dy;
  }
  return true;
}

template <typename scalar_t>
void fwd_impl(const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights, at::Tensor& loss) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const auto* X = joints.data_ptr<scalar_t>();
  const auto* Y = target.data_ptr<scalar_t>();
  const auto* W = weights.data_ptr<scalar_t>();
  std::vector<acc_t> num(B * T, acc_t(0)), den(B * T, acc_t(0));
  at::parallel_for(0, B * T, row_grain(J), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (r % T == T - 1) continue;
      acc_t n = 0, d = 0;
      for (int64_t j = 0; j < J; ++j) {
        acc_t pw, e[3];
        if (!pair_residual<scalar_t, acc_t>(X, Y, W, r * J + j, J, pw, e)) continue;
        d += pw;
        n += pw * (e[0] * e[0] + e[1] * e[1] + e[2] * e[2]);
      }
      num[r] = n;
      den[r] = d;
    }
  });
  auto* out = loss.data_ptr<scalar_t>();
  for (int64_t b = 0; b < B; ++b) {
    acc_t n = 0, d = 0;
    for (int64_t t = 0; t < T; ++t) {
      n += num[b * T + t];
      d += den[b * T + t];
    }
    out[b] = static_cast<scalar_t>(d != acc_t(0) ? n / d : acc_t(0));
  }
}

template <typename scalar_t>
void bwd_impl(const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights,
              at::Tensor& grad_joints, at::Tensor* grad_target) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const auto* X = joints.data_ptr<scalar_t>();
  const auto* Y = target.data_ptr<scalar_t>();
  const auto* W = weights.data_ptr<scalar_t>();
  const auto* g = grad.data_ptr<acc_t>();
  // The denominator is needed before any gradient can be written.
  std::vector<acc_t> coef(B, acc_t(0));
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      acc_t d = 0;
      for (int64_t t = 0; t + 1 < T; ++t)
        for (int64_t j = 0; j < J; ++j) {
          const int64_t i = (b * T + t) * J + j;
          d += static_cast<acc_t>(W[i]) * static_cast<acc_t>(W[i + J]);
        }
      coef[b] = d != acc_t(0) ? acc_t(2) * g[b] / d : acc_t(0);
    }
  });
  auto* gX = grad_joints.data_ptr<scalar_t>();
  scalar_t* gY = grad_target ? grad_target->data_ptr<scalar_t>() : nullptr;
  at::parallel_for(0, B * T, row_grain(J), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T, t = r % T;
      for (int64_t j = 0; j < J; ++j) {
        const int64_t i = r * J + j;
        acc_t gacc[3] = {0, 0, 0}, pw, e[3];
        // Pair (t-1, t) pulls frame t along +e, pair (t, t+1) along -e.
        if (t > 0 && pair_residual<scalar_t, acc_t>(X, Y, W, i - J, J, pw, e))
          for (int k = 0; k < 3; ++k) gacc[k] += coef[b] * pw * e[k];
        if (t + 1 < T && pair_residual<scalar_t, acc_t>(X, Y, W, i, J, pw, e))
          for (int k = 0; k < 3; ++k) gacc[k] -= coef[b] * pw * e[k];
        for (int k = 0; k < 3; ++k) {
          gX[3 * i + k] = static_cast<scalar_t>(gacc[k]);
          if (gY) gY[3 * i + k] = static_cast<scalar_t>(-gacc[k]);
        }
      }
    }
  });
}

}  // namespace

at::Tensor velocity3d_fwd_cpu(const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights) {
  auto loss = at::empty({joints.size(0)}, joints.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "velocity3d_fwd_cpu",
                                  [&] { fwd_impl<scalar_t>(joints, target, weights, loss); });
  return loss;
}

std::tuple<at::Tensor, at::Tensor> velocity3d_bwd_cpu(const at::Tensor& grad, const at::Tensor& joints,
                                                      const at::Tensor& target, const at::Tensor& weights,
                                                      bool need_target) {
  auto grad_joints = at::empty_like(joints);
  auto grad_target = need_target ? at::empty_like(target) : at::empty({0}, joints.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "velocity3d_bwd_cpu", [&] {
    bwd_impl<scalar_t>(grad, joints, target, weights, grad_joints, need_target ? &grad_target : nullptr);
  });
  return {grad_joints, grad_target};
}

}  // namespace vmdm
