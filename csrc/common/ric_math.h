// recover_from_ric (features -> joints) and its backward, shared by the CPU and
// CUDA kernels. Math: vmdm_kernels/ref/recover_from_ric.py.
//
// Two kinds of work: a per-clip scan over time (the heading and the root's ground
// position are running sums; backward, their gradients are suffix sums) and
// independent per-frame rows (placing the joints; backward, rotating their
// gradients back). The scan keeps (yaw, root x, root z) per frame in acc_t.
#pragma once

#include <cmath>
#include <cstdint>

#include "camera_math.h"  // VMDM_HD

namespace vmdm {

#if !defined(__CUDACC__)
using std::cos;
using std::sin;
#endif

// Channel c of frame t, denormalised when mean / std are given.
template <typename scalar_t, typename acc_t>
VMDM_HD acc_t ric_channel(const scalar_t* row, int c, const scalar_t* mean, const scalar_t* std) {
  const acc_t x = static_cast<acc_t>(row[c]);
  return mean != nullptr ? x * static_cast<acc_t>(std[c]) + static_cast<acc_t>(mean[c]) : x;
}

// Forward scan of one clip: path[3 t + (0, 1, 2)] = (yaw_t, root_x_t, root_z_t).
template <typename scalar_t, typename acc_t>
VMDM_HD void ric_scan(const scalar_t* F, int64_t T, int64_t D, const scalar_t* mean, const scalar_t* std,
                      acc_t* path) {
  acc_t half = acc_t(0), x = acc_t(0), z = acc_t(0);
  path[0] = acc_t(0);
  path[1] = acc_t(0);
  path[2] = acc_t(0);
  // Unrolled so that a GPU thread issues the loads of several frames before it needs
  // them: only the running sums carry from one frame to the next.
#pragma unroll 4
  for (int64_t t = 1; t < T; ++t) {
    const scalar_t* prev = F + (t - 1) * D;
    half += ric_channel<scalar_t, acc_t>(prev, 0, mean, std);
    const acc_t yaw = acc_t(-2) * half;
    const acc_t c = cos(yaw), s = sin(yaw);
    const acc_t vx = ric_channel<scalar_t, acc_t>(prev, 1, mean, std);
    const acc_t vz = ric_channel<scalar_t, acc_t>(prev, 2, mean, std);
    x += c * vx + s * vz;
    z += -s * vx + c * vz;
    path[3 * t] = yaw;
    path[3 * t + 1] = x;
    path[3 * t + 2] = z;
  }
}

// Joints [J, 3] of one frame from its features and its (yaw, root x, root z).
template <typename scalar_t, typename acc_t>
VMDM_HD void ric_row(const scalar_t* row, int J, const scalar_t* mean, const scalar_t* std, const acc_t* p,
                     scalar_t* out) {
  const acc_t c = cos(p[0]), s = sin(p[0]);
  out[0] = static_cast<scalar_t>(p[1]);
  out[1] = static_cast<scalar_t>(ric_channel<scalar_t, acc_t>(row, 3, mean, std));
  out[2] = static_cast<scalar_t>(p[2]);
  for (int j = 1; j < J; ++j) {
    const int ch = 4 + 3 * (j - 1);
    const acc_t rx = ric_channel<scalar_t, acc_t>(row, ch, mean, std);
    const acc_t ry = ric_channel<scalar_t, acc_t>(row, ch + 1, mean, std);
    const acc_t rz = ric_channel<scalar_t, acc_t>(row, ch + 2, mean, std);
    out[3 * j] = static_cast<scalar_t>(c * rx + s * rz + p[1]);
    out[3 * j + 1] = static_cast<scalar_t>(ry);
    out[3 * j + 2] = static_cast<scalar_t>(-s * rx + c * rz + p[2]);
  }
}

// Backward of one frame's placement. Writes dL/d(channels 3 .. 4+3(J-1)) of the row
// (times std when normalised) and returns, through acc[0..2], the gradient reaching
// the frame's (yaw, root x, root z).
template <typename scalar_t, typename acc_t>
VMDM_HD void ric_row_backward(const scalar_t* G, const scalar_t* row, int J, const scalar_t* mean,
                              const scalar_t* std, const acc_t* p, scalar_t* grow, acc_t* acc) {
  const acc_t c = cos(p[0]), s = sin(p[0]);
  acc_t gyaw = acc_t(0), gx = static_cast<acc_t>(G[0]), gz = static_cast<acc_t>(G[2]);
  auto put = [&](int ch, acc_t g) {
    grow[ch] = static_cast<scalar_t>(std != nullptr ? g * static_cast<acc_t>(std[ch]) : g);
  };
  put(3, static_cast<acc_t>(G[1]));
  for (int j = 1; j < J; ++j) {
    const int ch = 4 + 3 * (j - 1);
    const acc_t g0 = static_cast<acc_t>(G[3 * j]), g1 = static_cast<acc_t>(G[3 * j + 1]),
                g2 = static_cast<acc_t>(G[3 * j + 2]);
    const acc_t rx = ric_channel<scalar_t, acc_t>(row, ch, mean, std);
    const acc_t rz = ric_channel<scalar_t, acc_t>(row, ch + 2, mean, std);
    // R(yaw)^T g, and g . dR/dyaw r with dR/dyaw r = (-s rx + c rz, 0, -c rx - s rz).
    put(ch, c * g0 - s * g2);
    put(ch + 1, g1);
    put(ch + 2, s * g0 + c * g2);
    gyaw += g0 * (-s * rx + c * rz) + g2 * (-c * rx - s * rz);
    gx += g0;
    gz += g2;
  }
  acc[0] = gyaw;
  acc[1] = gx;
  acc[2] = gz;
}

// Backward scan of one clip. acc[3 t + k] holds what ric_row_backward returned for frame
// t; writes dL/d(channels 0, 1, 2) of every row (channels 0..2 of the last row: zero).
template <typename scalar_t, typename acc_t>
VMDM_HD void ric_scan_backward(const scalar_t* F, int64_t T, int64_t D, const scalar_t* mean, const scalar_t* std,
                               const acc_t* path, const acc_t* acc, scalar_t* GF) {
  auto put = [&](int64_t t, int ch, acc_t g) {
    GF[t * D + ch] = static_cast<scalar_t>(std != nullptr ? g * static_cast<acc_t>(std[ch]) : g);
  };
  put(T - 1, 0, acc_t(0));
  put(T - 1, 1, acc_t(0));
  put(T - 1, 2, acc_t(0));
  // Suffix sums over frames > k: the root position and the heading of every later frame
  // depend on step k (root_t = sum_{k<t} step_k, yaw_t = -2 sum_{k<t} f_k[0]).
  acc_t sx = acc_t(0), sz = acc_t(0), syaw = acc_t(0);
#pragma unroll 4
  for (int64_t k = T - 2; k >= 0; --k) {
    const int64_t t = k + 1;
    sx += acc[3 * t + 1];
    sz += acc[3 * t + 2];
    const scalar_t* row = F + k * D;
    const acc_t yaw = path[3 * t], c = cos(yaw), s = sin(yaw);
    const acc_t vx = ric_channel<scalar_t, acc_t>(row, 1, mean, std);
    const acc_t vz = ric_channel<scalar_t, acc_t>(row, 2, mean, std);
    // step_k = R(yaw_t) (vx, 0, vz): its gradient is (sx, sz) on x and z.
    put(k, 1, c * sx - s * sz);
    put(k, 2, s * sx + c * sz);
    const acc_t gyaw_t = acc[3 * t] + sx * (-s * vx + c * vz) + sz * (-c * vx - s * vz);
    syaw += gyaw_t;
    put(k, 0, acc_t(-2) * syaw);
  }
}

}  // namespace vmdm
