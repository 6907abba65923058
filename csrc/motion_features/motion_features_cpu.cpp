// CPU encoder: one pass over clips for the canonical frame, one over frames for the
// unsmoothed facing, one for each frame's smoothed root rotation, then rows (b, t) in
// parallel, each reading frames t and t+1 and their root rotations.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../common/optional_data.h"
#include "motion_features.h"

namespace vmdm {
namespace {

template <typename acc_t>
std::vector<acc_t> gaussian_taps(double sigma) {
  const int radius = gaussian_radius(sigma);
  std::vector<double> w(2 * radius + 1, 1.0);
  double total = 0.0;
  for (int k = -radius; k <= radius && radius > 0; ++k) {
    w[k + radius] = std::exp(-0.5 * (k / sigma) * (k / sigma));
  }
  for (double v : w) total += v;
  // The taps, then their running sums (cum[0] = 0, cum[k] = taps[0] + ... + taps[k-1]).
  std::vector<acc_t> out(2 * w.size() + 1);
  double run = 0.0;
  out[w.size()] = acc_t(0);
  for (size_t i = 0; i < w.size(); ++i) {
    out[i] = static_cast<acc_t>(w[i] / total);
    run += w[i] / total;
    out[w.size() + 1 + i] = static_cast<acc_t>(run);
  }
  return out;
}

template <typename scalar_t>
void fwd_impl(const at::Tensor& joints, const at::Tensor& lengths, const FeatureSkeletonView& sk, double thr,
              double sigma, const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std,
              at::Tensor& out) {
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
  const int64_t frames = B * T;
  const int64_t grain = std::max<int64_t>(1, 2048 / D);
  std::vector<acc_t> facing(2 * frames), quat(2 * frames);
  at::parallel_for(0, frames, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T, t = r % T;
      if (t < clips[b].len) ik_facing<scalar_t, acc_t>(X + r * J * 3, sk, clips[b], &facing[2 * r]);
    }
  });
  const std::vector<acc_t> taps = gaussian_taps<acc_t>(sigma);
  const int radius = gaussian_radius(sigma);
  at::parallel_for(0, frames, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T, t = r % T;
      if (t < clips[b].len)
        root_rotation<acc_t>(&facing[2 * b * T], t, clips[b].len, taps.data(), taps.data() + 2 * radius + 1, radius,
                             &quat[2 * r]);
    }
  });
  const int64_t rows = B * (T - 1);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / (T - 1), t = r % (T - 1);
      const ClipFrame<acc_t>& cf = clips[b];
      scalar_t* o = F + r * D;
      if (t + 1 >= cf.len) {
        encode_padding_row<scalar_t, acc_t>(static_cast<int>(D), M, S, o);
        continue;
      }
      const int64_t f = b * T + t;
      const scalar_t* Xt = X + f * J * 3;
      encode_row<scalar_t, acc_t>(Xt, Xt + J * 3, &quat[2 * f], &quat[2 * f + 2], sk, cf, static_cast<acc_t>(thr),
                                  M, S, o);
    }
  });
}

}  // namespace

at::Tensor motion_features_fwd_cpu(const at::Tensor& joints, const at::Tensor& lengths,
                                   const FeatureSkeletonView& sk, double feet_threshold, double facing_sigma,
                                   const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std) {
  const int64_t B = joints.size(0), T = joints.size(1);
  auto out = at::empty({B, T - 1, motion_feature_dim(sk.J, sk.nfeet)}, joints.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "motion_features_fwd_cpu", [&] {
    fwd_impl<scalar_t>(joints, lengths, sk, feet_threshold, facing_sigma, mean, std, out);
  });
  return out;
}

}  // namespace vmdm
