// Per-point camera math shared by the CPU and CUDA kernels.
//
// Every backend computes the same formulas; keeping them in one header that
// compiles for host and device is what makes the CPU and CUDA results agree to
// rounding. All arithmetic is done in acc_t (float for half/bfloat16/float
// inputs, double for double inputs).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define VMDM_HD __host__ __device__ __forceinline__
#else
#define VMDM_HD inline
#endif

namespace vmdm {

enum DepthMode : int64_t { kDepthNone = 0, kDepthSample = 1, kDepthPoint = 2 };

template <typename acc_t>
struct Camera {
  acc_t R[9];  // row-major
  acc_t t[3];
  acc_t fx, fy, cx, cy;
};

// ext: 12 values of [R|t] (row-major 3x4). intr: (fx, fy, cx, cy) or nullptr.
template <typename scalar_t, typename acc_t>
VMDM_HD void load_camera(const scalar_t* ext, const scalar_t* intr, Camera<acc_t>& c) {
#pragma unroll
  for (int i = 0; i < 3; ++i) {
#pragma unroll
    for (int k = 0; k < 3; ++k) c.R[3 * i + k] = static_cast<acc_t>(ext[4 * i + k]);
    c.t[i] = static_cast<acc_t>(ext[4 * i + 3]);
  }
  if (intr != nullptr) {
    c.fx = static_cast<acc_t>(intr[0]);
    c.fy = static_cast<acc_t>(intr[1]);
    c.cx = static_cast<acc_t>(intr[2]);
    c.cy = static_cast<acc_t>(intr[3]);
  } else {
    c.fx = acc_t(1);
    c.fy = acc_t(1);
    c.cx = acc_t(0);
    c.cy = acc_t(0);
  }
}

// One joint seen by the camera, with its observation.
template <typename acc_t>
struct ObservedPoint {
  acc_t X[3];    // world position
  acc_t xc, yc;  // camera frame x, y
  acc_t z;       // depth
  acc_t u, v;    // projection
  acc_t ku, kv;  // observed keypoint
  acc_t w;       // weight (0 = ignored)
  bool valid;    // w != 0 and in front of the near plane
};

// The guard is written as !(z <= z_min) so that a NaN depth counts as valid and
// propagates to the loss instead of being silently dropped.
template <typename scalar_t, typename acc_t>
VMDM_HD void observe_point(const Camera<acc_t>& c, const scalar_t* X, const scalar_t* K, scalar_t w,
                           acc_t z_min, ObservedPoint<acc_t>& p) {
  p.w = static_cast<acc_t>(w);
  if (p.w == acc_t(0)) {
    // Ignored points are never read: their inputs may be NaN (missing detections).
    p.X[0] = p.X[1] = p.X[2] = acc_t(0);
    p.xc = p.yc = p.u = p.v = p.ku = p.kv = acc_t(0);
    p.z = acc_t(1);
    p.valid = false;
    return;
  }
#pragma unroll
  for (int k = 0; k < 3; ++k) p.X[k] = static_cast<acc_t>(X[k]);
  p.xc = c.R[0] * p.X[0] + c.R[1] * p.X[1] + c.R[2] * p.X[2] + c.t[0];
  p.yc = c.R[3] * p.X[0] + c.R[4] * p.X[1] + c.R[5] * p.X[2] + c.t[1];
  p.z = c.R[6] * p.X[0] + c.R[7] * p.X[1] + c.R[8] * p.X[2] + c.t[2];
  p.valid = !(p.z <= z_min);
  if (p.valid) {
    const acc_t inv_z = acc_t(1) / p.z;
    p.u = c.fx * p.xc * inv_z + c.cx;
    p.v = c.fy * p.yc * inv_z + c.cy;
    p.ku = static_cast<acc_t>(K[0]);
    p.kv = static_cast<acc_t>(K[1]);
  } else {
    p.u = p.v = p.ku = p.kv = acc_t(0);
  }
}

template <typename acc_t>
VMDM_HD acc_t depth_pow(acc_t z, acc_t p) {
  if (p == acc_t(1)) return z;
  if (p == acc_t(2)) return z * z;
  if (p == acc_t(0)) return acc_t(1);
  return pow(z, p);
}

// Per-axis depth weights (ax, ay) of a term whose depth is z: z^p / f^2 in
// point mode, 1 otherwise (sample mode applies its weight per clip).
template <typename acc_t>
VMDM_HD void axis_weights(int64_t mode, acc_t z, acc_t p, const Camera<acc_t>& c, acc_t& ax, acc_t& ay) {
  if (mode == kDepthPoint) {
    const acc_t zp = depth_pow(z, p);
    ax = zp / (c.fx * c.fx);
    ay = zp / (c.fy * c.fy);
  } else {
    ax = acc_t(1);
    ay = acc_t(1);
  }
}

// Back-propagates (du, dv) of a valid point to its world position and, when
// the pointers are given, accumulates into the camera [R|t] (12) and
// intrinsics (4) gradients.
template <typename acc_t>
VMDM_HD void project_backward(const Camera<acc_t>& c, const ObservedPoint<acc_t>& p, acc_t gu, acc_t gv,
                              acc_t gX[3], acc_t* gcam, acc_t* gintr) {
  const acc_t inv_z = acc_t(1) / p.z;
  const acc_t gxc = gu * c.fx * inv_z;
  const acc_t gyc = gv * c.fy * inv_z;
  const acc_t gz = -(gu * c.fx * p.xc + gv * c.fy * p.yc) * inv_z * inv_z;
#pragma unroll
  for (int k = 0; k < 3; ++k) gX[k] = c.R[k] * gxc + c.R[3 + k] * gyc + c.R[6 + k] * gz;
  if (gcam != nullptr) {
    const acc_t g[3] = {gxc, gyc, gz};
#pragma unroll
    for (int i = 0; i < 3; ++i) {
#pragma unroll
      for (int k = 0; k < 3; ++k) gcam[4 * i + k] += g[i] * p.X[k];
      gcam[4 * i + 3] += g[i];
    }
  }
  if (gintr != nullptr) {
    gintr[0] += gu * p.xc * inv_z;
    gintr[1] += gv * p.yc * inv_z;
    gintr[2] += gu;
    gintr[3] += gv;
  }
}

// ---------------------------------------------------------------------------
// Ray-projection pseudo-target: the closest point to X on the camera ray
// through keypoint (u, v). Forward and backward for one point.

template <typename acc_t>
struct Ray {
  acc_t d[3];  // camera-frame direction ((u-cx)/fx, (v-cy)/fy, 1)
  acc_t r[3];  // world direction R^T d
  acc_t C[3];  // camera centre -R^T t
  acc_t a[3];  // X - C
  acc_t rr;    // |r|^2
  acc_t s;     // (a . r) / |r|^2
};

template <typename acc_t>
VMDM_HD void ray_forward(const Camera<acc_t>& c, const acc_t X[3], acc_t u, acc_t v, Ray<acc_t>& q, acc_t P[3]) {
  q.d[0] = (u - c.cx) / c.fx;
  q.d[1] = (v - c.cy) / c.fy;
  q.d[2] = acc_t(1);
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    q.r[k] = c.R[k] * q.d[0] + c.R[3 + k] * q.d[1] + c.R[6 + k] * q.d[2];
    q.C[k] = -(c.R[k] * c.t[0] + c.R[3 + k] * c.t[1] + c.R[6 + k] * c.t[2]);
    q.a[k] = X[k] - q.C[k];
  }
  q.rr = q.r[0] * q.r[0] + q.r[1] * q.r[1] + q.r[2] * q.r[2];
  q.s = (q.a[0] * q.r[0] + q.a[1] * q.r[1] + q.a[2] * q.r[2]) / q.rr;
#pragma unroll
  for (int k = 0; k < 3; ++k) P[k] = q.C[k] + q.s * q.r[k];
}

// dL/dX alone (the training case: the keypoints and camera are data). Only the ray
// direction enters, so this skips the camera centre, the projection and dL/d(u, v);
// it evaluates the same expression as ray_backward's gX.
template <typename acc_t>
VMDM_HD void ray_backward_joints(const Camera<acc_t>& c, acc_t u, acc_t v, const acc_t G[3], acc_t gX[3]) {
  const acc_t d0 = (u - c.cx) / c.fx, d1 = (v - c.cy) / c.fy;
  acc_t r[3];
#pragma unroll
  for (int k = 0; k < 3; ++k) r[k] = c.R[k] * d0 + c.R[3 + k] * d1 + c.R[6 + k] * acc_t(1);
  const acc_t rr = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
  const acc_t Gr = G[0] * r[0] + G[1] * r[1] + G[2] * r[2];
  const acc_t inv_rr = acc_t(1) / rr;
#pragma unroll
  for (int k = 0; k < 3; ++k) gX[k] = Gr * r[k] * inv_rr;
}

// G: upstream gradient of P. Writes dL/dX and dL/d(u, v); accumulates camera
// and intrinsics gradients when the pointers are given.
template <typename acc_t>
VMDM_HD void ray_backward(const Camera<acc_t>& c, const Ray<acc_t>& q, const acc_t G[3], acc_t gX[3], acc_t& gu,
                          acc_t& gv, acc_t* gcam, acc_t* gintr) {
  const acc_t Gr = G[0] * q.r[0] + G[1] * q.r[1] + G[2] * q.r[2];
  const acc_t inv_rr = acc_t(1) / q.rr;
  acc_t gr[3], gC[3];
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    gX[k] = Gr * q.r[k] * inv_rr;
    gC[k] = G[k] - gX[k];
    gr[k] = q.s * G[k] + Gr * (q.a[k] - acc_t(2) * q.s * q.r[k]) * inv_rr;
  }
  // r = R^T d  ->  dL/dd = R dL/dr ;  C = -R^T t  ->  dL/dt = -R dL/dC
  acc_t gd[3];
#pragma unroll
  for (int i = 0; i < 3; ++i) gd[i] = c.R[3 * i] * gr[0] + c.R[3 * i + 1] * gr[1] + c.R[3 * i + 2] * gr[2];
  gu = gd[0] / c.fx;
  gv = gd[1] / c.fy;
  if (gcam != nullptr) {
#pragma unroll
    for (int i = 0; i < 3; ++i) {
#pragma unroll
      for (int k = 0; k < 3; ++k) gcam[4 * i + k] += q.d[i] * gr[k] - c.t[i] * gC[k];
      gcam[4 * i + 3] -= c.R[3 * i] * gC[0] + c.R[3 * i + 1] * gC[1] + c.R[3 * i + 2] * gC[2];
    }
  }
  if (gintr != nullptr) {
    gintr[0] -= gd[0] * q.d[0] / c.fx;
    gintr[1] -= gd[1] * q.d[1] / c.fy;
    gintr[2] -= gd[0] / c.fx;
    gintr[3] -= gd[1] / c.fy;
  }
}

}  // namespace vmdm
