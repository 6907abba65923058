// CPU encoder: one pass over clips for the canonical frame, then rows (b, t)
// in parallel, each reading frames t and t+1 only.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../common/optional_data.h"
#include "motion_features.h"

namespace vmdm {
namespace {

template <typename scalar_t>
void fwd_impl(const at::Tensor& joints, const at::Tensor& lengths, const FeatureSkeletonView& sk, double thr,
              const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2), D = out.size(2);
  const auto* X = joints.data_ptr<scalar_t>();
  const auto* L = lengths.data_ptr<int64_t>();
  const scalar_t* M = optional_data<scalar_t>(mean);
  const scalar_t* S = optional_data<scalar_t>(std);
  auto* F = out.data_ptr<scalar_t>();
  std::vector<ClipFrame<acc_t>> clips(B);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      ClipFrame<acc_t>& cf = clips[b];
      cf.len = std::min<int64_t>(std::max<int64_t>(L[b], 2), T);
      const scalar_t* Xb = X + b * T * J * 3;
      acc_t floor = std::numeric_limits<acc_t>::infinity();
      for (int64_t i = 0; i < cf.len * J; ++i) floor = std::min(floor, static_cast<acc_t>(Xb[3 * i + 1]));
      cf.ox = static_cast<acc_t>(Xb[0]);
      cf.oy = floor;
      cf.oz = static_cast<acc_t>(Xb[2]);
      cf.yaw0 = facing_yaw<scalar_t, acc_t>(Xb, sk.facing);
      cf.cos0 = std::cos(-cf.yaw0);
      cf.sin0 = std::sin(-cf.yaw0);
    }
  });
  const int64_t rows = B * (T - 1);
  const int64_t grain = std::max<int64_t>(1, 2048 / D);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / (T - 1), t = r % (T - 1);
      const ClipFrame<acc_t>& cf = clips[b];
      scalar_t* o = F + r * D;
      if (t + 1 >= cf.len) {
        encode_padding_row<scalar_t, acc_t>(static_cast<int>(D), M, S, o);
        continue;
      }
      const scalar_t* Xt = X + (b * T + t) * J * 3;
      encode_row<scalar_t, acc_t>(Xt, Xt + J * 3, sk, cf, static_cast<acc_t>(thr), M, S, o);
    }
  });
}

}  // namespace

at::Tensor motion_features_fwd_cpu(const at::Tensor& joints, const at::Tensor& lengths,
                                   const FeatureSkeletonView& sk, double feet_threshold,
                                   const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std) {
  const int64_t B = joints.size(0), T = joints.size(1);
  auto out = at::empty({B, T - 1, motion_feature_dim(sk.J, sk.nfeet)}, joints.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "motion_features_fwd_cpu", [&] {
    fwd_impl<scalar_t>(joints, lengths, sk, feet_threshold, mean, std, out);
  });
  return out;
}

}  // namespace vmdm
