// CPU kernels, parallel over (batch, frame) rows; each row loads its camera once.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>

#include "../common/camera_math.h"
#include "../common/optional_data.h"
#include "ray_targets.h"

namespace vmdm {
namespace {

int64_t row_grain(int64_t J) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(J, 1)); }

template <typename scalar_t>
void fwd_impl(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
              const std::optional<at::Tensor>& intrinsics, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const bool per_frame = camera.dim() == 4;
  const auto* X = joints.data_ptr<scalar_t>();
  const auto* K = keypoints.data_ptr<scalar_t>();
  const auto* cam = camera.data_ptr<scalar_t>();
  const scalar_t* intr = optional_data<scalar_t>(intrinsics);
  auto* P = out.data_ptr<scalar_t>();
  at::parallel_for(0, B * T, row_grain(J), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T;
      Camera<acc_t> c;
      load_camera<scalar_t, acc_t>(cam + (per_frame ? r : b) * 12, intr ? intr + 4 * b : nullptr, c);
      for (int64_t j = 0; j < J; ++j) {
        const int64_t i = r * J + j;
        const acc_t x[3] = {static_cast<acc_t>(X[3 * i]), static_cast<acc_t>(X[3 * i + 1]),
                            static_cast<acc_t>(X[3 * i + 2])};
        Ray<acc_t> q;
        acc_t p[3];
        ray_forward(c, x, static_cast<acc_t>(K[2 * i]), static_cast<acc_t>(K[2 * i + 1]), q, p);
        for (int k = 0; k < 3; ++k) P[3 * i + k] = static_cast<scalar_t>(p[k]);
      }
    }
  });
}

// kFull: also dL/d(keypoints) and per-row camera / intrinsics contributions. Without
// them (training) a cheaper per-point formula applies: a third of the arithmetic.
template <typename scalar_t, bool kFull>
void bwd_impl(const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
              const std::optional<at::Tensor>& intrinsics, at::Tensor& grad_joints, at::Tensor* grad_keypoints,
              at::Tensor* cam_rows, at::Tensor* intr_rows) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const bool per_frame = camera.dim() == 4;
  const auto* G = grad.data_ptr<scalar_t>();
  const auto* X = joints.data_ptr<scalar_t>();
  const auto* K = keypoints.data_ptr<scalar_t>();
  const auto* cam = camera.data_ptr<scalar_t>();
  const scalar_t* intr = optional_data<scalar_t>(intrinsics);
  auto* gX = grad_joints.data_ptr<scalar_t>();
  scalar_t* gK = grad_keypoints ? grad_keypoints->data_ptr<scalar_t>() : nullptr;
  acc_t* gcam = cam_rows ? cam_rows->data_ptr<acc_t>() : nullptr;
  acc_t* gintr = intr_rows ? intr_rows->data_ptr<acc_t>() : nullptr;
  at::parallel_for(0, B * T, row_grain(J), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T;
      Camera<acc_t> c;
      load_camera<scalar_t, acc_t>(cam + (per_frame ? r : b) * 12, intr ? intr + 4 * b : nullptr, c);
      acc_t* gcam_row = gcam ? gcam + 12 * r : nullptr;
      acc_t* gintr_row = gintr ? gintr + 4 * r : nullptr;
      if (gcam_row) std::fill(gcam_row, gcam_row + 12, acc_t(0));
      if (gintr_row) std::fill(gintr_row, gintr_row + 4, acc_t(0));
      for (int64_t j = 0; j < J; ++j) {
        const int64_t i = r * J + j;
        const acc_t g[3] = {static_cast<acc_t>(G[3 * i]), static_cast<acc_t>(G[3 * i + 1]),
                            static_cast<acc_t>(G[3 * i + 2])};
        const acc_t u = static_cast<acc_t>(K[2 * i]), v = static_cast<acc_t>(K[2 * i + 1]);
        acc_t gx[3];
        if constexpr (kFull) {
          const acc_t x[3] = {static_cast<acc_t>(X[3 * i]), static_cast<acc_t>(X[3 * i + 1]),
                              static_cast<acc_t>(X[3 * i + 2])};
          Ray<acc_t> q;
          acc_t p[3], gu, gv;
          ray_forward(c, x, u, v, q, p);
          ray_backward(c, q, g, gx, gu, gv, gcam_row, gintr_row);
          if (gK) {
            gK[2 * i] = static_cast<scalar_t>(gu);
            gK[2 * i + 1] = static_cast<scalar_t>(gv);
          }
        } else {
          ray_backward_joints(c, u, v, g, gx);
        }
        for (int k = 0; k < 3; ++k) gX[3 * i + k] = static_cast<scalar_t>(gx[k]);
      }
    }
  });
}

}  // namespace

at::Tensor ray_targets_fwd_cpu(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
                               const std::optional<at::Tensor>& intrinsics) {
  auto out = at::empty_like(joints);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "ray_targets_fwd_cpu",
                                  [&] { fwd_impl<scalar_t>(joints, keypoints, camera, intrinsics, out); });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_targets_bwd_cpu(
    const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
    const std::optional<at::Tensor>& intrinsics, bool need_keypoints, bool need_camera, bool need_intrinsics) {
  const int64_t B = joints.size(0), T = joints.size(1);
  const auto acc_opts = joints.options().dtype(joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  auto grad_joints = at::empty_like(joints);
  auto grad_keypoints = need_keypoints ? at::empty_like(keypoints) : at::empty({0}, joints.options());
  auto cam_rows = need_camera ? at::empty({B, T, 3, 4}, acc_opts) : at::Tensor();
  auto intr_rows = need_intrinsics ? at::empty({B, T, 4}, acc_opts) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "ray_targets_bwd_cpu", [&] {
    if (need_keypoints || need_camera || need_intrinsics) {
      bwd_impl<scalar_t, true>(grad, joints, keypoints, camera, intrinsics, grad_joints,
                               need_keypoints ? &grad_keypoints : nullptr, need_camera ? &cam_rows : nullptr,
                               need_intrinsics ? &intr_rows : nullptr);
    } else {
      bwd_impl<scalar_t, false>(grad, joints, keypoints, camera, intrinsics, grad_joints, nullptr, nullptr, nullptr);
    }
  });
  at::Tensor grad_camera = at::empty({0}, joints.options());
  if (need_camera) grad_camera = (camera.dim() == 4 ? cam_rows : cam_rows.sum(1)).to(joints.scalar_type());
  at::Tensor grad_intrinsics = need_intrinsics ? intr_rows.sum(1).to(joints.scalar_type())
                                               : at::empty({0}, joints.options());
  return {grad_joints, grad_keypoints, grad_camera, grad_intrinsics};
}

}  // namespace vmdm
