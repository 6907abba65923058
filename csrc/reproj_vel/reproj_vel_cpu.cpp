// CPU kernels: parallel over (batch, frame) rows with at::parallel_for.
//
// Each chunk of rows walks time in order and carries the projection of the
// next frame into the following row, so every frame is projected once per
// chunk (plus a one-frame halo at the chunk edge) instead of once per term.
// Per-row partial sums are reduced per sample in frame order, which makes the
// result independent of the thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <vector>

#include "../common/camera_math.h"
#include "../common/optional_data.h"
#include "reproj_vel.h"

namespace vmdm {
namespace {

template <typename scalar_t, typename acc_t>
struct Inputs {
  const scalar_t* X;
  const scalar_t* K;
  const scalar_t* W;
  const scalar_t* cam;
  const scalar_t* intr;
  int64_t B, T, J;
  bool per_frame;
  int64_t mode;
  acc_t power, z_min;

  void observe(int64_t b, int64_t t, Camera<acc_t>& c, ObservedPoint<acc_t>* pts) const {
    const int64_t row = b * T + t;
    load_camera<scalar_t, acc_t>(cam + (per_frame ? row : b) * 12, intr ? intr + b * 4 : nullptr, c);
    for (int64_t j = 0; j < J; ++j) {
      const int64_t i = row * J + j;
      observe_point<scalar_t, acc_t>(c, X + 3 * i, K + 2 * i, W[i], z_min, pts[j]);
    }
  }
};

int64_t row_grain(int64_t J) { return std::max<int64_t>(1, 2048 / std::max<int64_t>(J, 1)); }

// Partial sums per row.
enum RowStat { kNumPos = 0, kDenPos, kNumVel, kDenVel, kZSum, kZCount, kRowStats };

template <typename scalar_t>
void fwd_impl(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
              const at::Tensor& weights, const std::optional<at::Tensor>& intrinsics, int64_t mode, double power,
              double z_min, bool with_pos, bool with_vel, at::Tensor& loss_pos, at::Tensor& loss_vel,
              at::Tensor& stats) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const Inputs<scalar_t, acc_t> in{joints.data_ptr<scalar_t>(),
                                   keypoints.data_ptr<scalar_t>(),
                                   weights.data_ptr<scalar_t>(),
                                   camera.data_ptr<scalar_t>(),
                                   optional_data<scalar_t>(intrinsics),
                                   B, T, J, camera.dim() == 4, mode, static_cast<acc_t>(power),
                                   static_cast<acc_t>(z_min)};
  std::vector<acc_t> rows(static_cast<size_t>(B * T * kRowStats), acc_t(0));

  at::parallel_for(0, B * T, row_grain(J), [&](int64_t begin, int64_t end) {
    std::vector<ObservedPoint<acc_t>> cur(J), nxt(J);
    Camera<acc_t> cam_cur, cam_nxt;
    bool have_cur = false;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T, t = r % T;
      if (!have_cur) in.observe(b, t, cam_cur, cur.data());
      acc_t* s = rows.data() + r * kRowStats;
      for (int64_t j = 0; j < J; ++j) {
        const auto& p = cur[j];
        s[kDenPos] += p.w;
        if (!p.valid) continue;
        s[kZSum] += p.z;
        s[kZCount] += acc_t(1);
        if (with_pos) {
          acc_t ax, ay;
          axis_weights(mode, p.z, in.power, cam_cur, ax, ay);
          const acc_t du = p.u - p.ku, dv = p.v - p.kv;
          s[kNumPos] += p.w * (ax * du * du + ay * dv * dv);
        }
      }
      have_cur = false;
      if (with_vel && t + 1 < T) {
        in.observe(b, t + 1, cam_nxt, nxt.data());
        for (int64_t j = 0; j < J; ++j) {
          const auto& p = cur[j];
          const auto& n = nxt[j];
          const acc_t pw = p.w * n.w;
          s[kDenVel] += pw;
          if (!(p.valid && n.valid)) continue;
          acc_t ax, ay;
          axis_weights(mode, acc_t(0.5) * (p.z + n.z), in.power, cam_cur, ax, ay);
          const acc_t eu = (n.u - p.u) - (n.ku - p.ku), ev = (n.v - p.v) - (n.kv - p.kv);
          s[kNumVel] += pw * (ax * eu * eu + ay * ev * ev);
        }
        std::swap(cur, nxt);
        std::swap(cam_cur, cam_nxt);
        have_cur = true;
      }
    }
  });

  auto* lp = loss_pos.data_ptr<scalar_t>();
  auto* lv = loss_vel.data_ptr<scalar_t>();
  auto* st = stats.data_ptr<acc_t>();
  at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      acc_t sum[kRowStats] = {};
      for (int64_t t = 0; t < T; ++t)
        for (int k = 0; k < kRowStats; ++k) sum[k] += rows[(b * T + t) * kRowStats + k];
      acc_t wb = acc_t(1);
      if (mode == kDepthSample)
        wb = sum[kZCount] > 0 ? depth_pow(sum[kZSum] / sum[kZCount], in.power) : acc_t(0);
      const acc_t pos = with_pos && sum[kDenPos] != acc_t(0) ? wb * sum[kNumPos] / sum[kDenPos] : acc_t(0);
      const acc_t vel = with_vel && sum[kDenVel] != acc_t(0) ? wb * sum[kNumVel] / sum[kDenVel] : acc_t(0);
      lp[b] = static_cast<scalar_t>(pos);
      lv[b] = static_cast<scalar_t>(vel);
      st[3 * b + 0] = wb;
      st[3 * b + 1] = sum[kDenPos];
      st[3 * b + 2] = sum[kDenVel];
    }
  });
}

template <typename scalar_t>
void bwd_impl(const at::Tensor& grad_pos, const at::Tensor& grad_vel, const at::Tensor& joints,
              const at::Tensor& keypoints, const at::Tensor& camera, const at::Tensor& weights,
              const std::optional<at::Tensor>& intrinsics, const at::Tensor& stats, int64_t mode, double power,
              double z_min, bool with_pos, bool with_vel, at::Tensor& grad_joints, at::Tensor* grad_keypoints,
              at::Tensor* grad_cam_rows, at::Tensor* grad_intr_rows) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const Inputs<scalar_t, acc_t> in{joints.data_ptr<scalar_t>(),
                                   keypoints.data_ptr<scalar_t>(),
                                   weights.data_ptr<scalar_t>(),
                                   camera.data_ptr<scalar_t>(),
                                   optional_data<scalar_t>(intrinsics),
                                   B, T, J, camera.dim() == 4, mode, static_cast<acc_t>(power),
                                   static_cast<acc_t>(z_min)};
  // Per-sample chain-rule coefficients: dL/d(term) = upstream * w_b / denominator.
  std::vector<acc_t> cpos(B), cvel(B);
  {
    const auto* gp = grad_pos.data_ptr<acc_t>();
    const auto* gv = grad_vel.data_ptr<acc_t>();
    const auto* st = stats.data_ptr<acc_t>();
    for (int64_t b = 0; b < B; ++b) {
      const acc_t wb = st[3 * b], dp = st[3 * b + 1], dv = st[3 * b + 2];
      cpos[b] = with_pos && dp != acc_t(0) ? acc_t(2) * gp[b] * wb / dp : acc_t(0);
      cvel[b] = with_vel && dv != acc_t(0) ? acc_t(2) * gv[b] * wb / dv : acc_t(0);
    }
  }
  auto* gX = grad_joints.data_ptr<scalar_t>();
  scalar_t* gK = grad_keypoints ? grad_keypoints->data_ptr<scalar_t>() : nullptr;
  acc_t* gcam = grad_cam_rows ? grad_cam_rows->data_ptr<acc_t>() : nullptr;
  acc_t* gintr = grad_intr_rows ? grad_intr_rows->data_ptr<acc_t>() : nullptr;

  at::parallel_for(0, B * T, row_grain(J), [&](int64_t begin, int64_t end) {
    std::vector<ObservedPoint<acc_t>> prev(J), cur(J), nxt(J);
    Camera<acc_t> cam_prev, cam_cur, cam_nxt;
    bool have_prev = false, have_cur = false;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T, t = r % T;
      const bool has_prev = with_vel && t > 0, has_next = with_vel && t + 1 < T;
      if (!have_cur) in.observe(b, t, cam_cur, cur.data());
      if (has_prev && !have_prev) in.observe(b, t - 1, cam_prev, prev.data());
      if (has_next) in.observe(b, t + 1, cam_nxt, nxt.data());
      acc_t* gcam_row = gcam ? gcam + r * 12 : nullptr;
      acc_t* gintr_row = gintr ? gintr + r * 4 : nullptr;
      if (gcam_row) std::fill(gcam_row, gcam_row + 12, acc_t(0));
      if (gintr_row) std::fill(gintr_row, gintr_row + 4, acc_t(0));
      for (int64_t j = 0; j < J; ++j) {
        const auto& p = cur[j];
        const int64_t i = r * J + j;
        acc_t gu = 0, gv = 0, g3[3] = {0, 0, 0};
        if (p.valid) {
          acc_t ax, ay;
          if (with_pos) {
            axis_weights(mode, p.z, in.power, cam_cur, ax, ay);
            gu += cpos[b] * p.w * ax * (p.u - p.ku);
            gv += cpos[b] * p.w * ay * (p.v - p.kv);
          }
          if (has_next && nxt[j].valid) {
            const auto& n = nxt[j];
            axis_weights(mode, acc_t(0.5) * (p.z + n.z), in.power, cam_cur, ax, ay);
            const acc_t c = cvel[b] * p.w * n.w;
            gu -= c * ax * ((n.u - p.u) - (n.ku - p.ku));
            gv -= c * ay * ((n.v - p.v) - (n.kv - p.kv));
          }
          if (has_prev && prev[j].valid) {
            const auto& q = prev[j];
            axis_weights(mode, acc_t(0.5) * (p.z + q.z), in.power, cam_cur, ax, ay);
            const acc_t c = cvel[b] * p.w * q.w;
            gu += c * ax * ((p.u - q.u) - (p.ku - q.ku));
            gv += c * ay * ((p.v - q.v) - (p.kv - q.kv));
          }
          project_backward(cam_cur, p, gu, gv, g3, gcam_row, gintr_row);
        }
        for (int k = 0; k < 3; ++k) gX[3 * i + k] = static_cast<scalar_t>(g3[k]);
        if (gK) {
          // The loss depends on keypoints only through (projection - keypoint).
          gK[2 * i] = static_cast<scalar_t>(-gu);
          gK[2 * i + 1] = static_cast<scalar_t>(-gv);
        }
      }
      if (has_next) {
        std::swap(prev, cur);
        std::swap(cur, nxt);
        std::swap(cam_prev, cam_cur);
        std::swap(cam_cur, cam_nxt);
        have_prev = have_cur = true;
      } else {
        have_prev = have_cur = false;
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> reproj_vel_fwd_cpu(
    const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera, const at::Tensor& weights,
    const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double depth_power, double z_min,
    bool with_pos, bool with_vel) {
  const int64_t B = joints.size(0);
  const auto acc = joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto loss_pos = at::empty({B}, joints.options());
  auto loss_vel = at::empty({B}, joints.options());
  auto stats = at::empty({B, 3}, joints.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "reproj_vel_fwd_cpu", [&] {
    fwd_impl<scalar_t>(joints, keypoints, camera, weights, intrinsics, depth_mode, depth_power, z_min, with_pos,
                       with_vel, loss_pos, loss_vel, stats);
  });
  return {loss_pos, loss_vel, stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> reproj_vel_bwd_cpu(
    const at::Tensor& grad_pos, const at::Tensor& grad_vel, const at::Tensor& joints, const at::Tensor& keypoints,
    const at::Tensor& camera, const at::Tensor& weights, const std::optional<at::Tensor>& intrinsics,
    const at::Tensor& stats, int64_t depth_mode, double depth_power, double z_min, bool with_pos, bool with_vel,
    bool need_keypoints, bool need_camera, bool need_intrinsics) {
  const int64_t B = joints.size(0), T = joints.size(1);
  const auto acc_opts = joints.options().dtype(joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  auto grad_joints = at::empty_like(joints);
  auto grad_keypoints = need_keypoints ? at::empty_like(keypoints) : at::empty({0}, joints.options());
  auto cam_rows = need_camera ? at::empty({B, T, 3, 4}, acc_opts) : at::Tensor();
  auto intr_rows = need_intrinsics ? at::empty({B, T, 4}, acc_opts) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "reproj_vel_bwd_cpu", [&] {
    bwd_impl<scalar_t>(grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics, stats, depth_mode,
                       depth_power, z_min, with_pos, with_vel, grad_joints, need_keypoints ? &grad_keypoints : nullptr,
                       need_camera ? &cam_rows : nullptr, need_intrinsics ? &intr_rows : nullptr);
  });
  at::Tensor grad_camera = at::empty({0}, joints.options());
  if (need_camera) {
    grad_camera = (camera.dim() == 4 ? cam_rows : cam_rows.sum(1)).to(joints.scalar_type());
  }
  at::Tensor grad_intrinsics = need_intrinsics ? intr_rows.sum(1).to(joints.scalar_type())
                                               : at::empty({0}, joints.options());
  return {grad_joints, grad_keypoints, grad_camera, grad_intrinsics};
}

}  // namespace vmdm
