// Per-frame HumanML3D feature encoding shared by the CPU and CUDA kernels.
// Math and channel layout: vmdm_kernels/ref/motion_features.py.
//
// A clip is first reduced to its canonical frame (ClipFrame: the floor, frame
// 0's root and heading); then every feature row t reads only frames t and t+1,
// so rows are independent. All arithmetic is in acc_t (float for
// half/bfloat16/float inputs, double for double).
#pragma once

#include <cmath>
#include <cstdint>

#include "camera_math.h"  // VMDM_HD

namespace vmdm {

#if !defined(__CUDACC__)
// Host builds: the float overloads (CUDA provides them for device code).
using std::atan2;
using std::cos;
using std::fabs;
using std::sin;
using std::sqrt;
#endif

constexpr int kMaxFeatureJoints = 64;
// encode_row's per-joint scratch lives in local memory on a GPU, sized at compile time;
// the driver reserves that much for every resident thread, so SMPL-sized skeletons get a
// smaller instantiation than the 64-joint limit.
constexpr int kSmallFeatureJoints = 24;
constexpr int kMaxFeet = 8;

// The skeleton as plain data, passed by value to kernels (about 2 KiB).
struct FeatureSkeletonView {
  int J;
  int nfeet;
  int facing[4];  // right hip, left hip, right shoulder, left shoulder
  int feet[kMaxFeet];
  // Bones in an order where every parent's bone comes first: child[k], parent[k].
  int child[kMaxFeatureJoints];
  int parent[kMaxFeatureJoints];
  double rest[3 * kMaxFeatureJoints];  // rest vector of the bone ending at each joint (any length)
};

template <typename acc_t>
struct ClipFrame {
  acc_t ox, oy, oz;  // canonical origin: frame 0's root over the clip's lowest joint
  acc_t cos0, sin0;  // of -yaw0
  acc_t yaw0;
  int64_t len;       // valid frames, clamped to [2, T]
};

template <typename acc_t>
VMDM_HD acc_t wrap_angle(acc_t a) { return atan2(sin(a), cos(a)); }

template <typename scalar_t, typename acc_t>
VMDM_HD acc_t facing_yaw(const scalar_t* X, const int* facing) {
  const scalar_t* rh = X + 3 * facing[0];
  const scalar_t* lh = X + 3 * facing[1];
  const scalar_t* rs = X + 3 * facing[2];
  const scalar_t* ls = X + 3 * facing[3];
  const acc_t ax = (static_cast<acc_t>(rh[0]) - static_cast<acc_t>(lh[0])) +
                   (static_cast<acc_t>(rs[0]) - static_cast<acc_t>(ls[0]));
  const acc_t az = (static_cast<acc_t>(rh[2]) - static_cast<acc_t>(lh[2])) +
                   (static_cast<acc_t>(rs[2]) - static_cast<acc_t>(ls[2]));
  return atan2(az, -ax);
}

// rotation_about_y(angle) @ v with (c, s) = (cos angle, sin angle).
template <typename acc_t>
VMDM_HD void rot_y(acc_t c, acc_t s, const acc_t* v, acc_t* out) {
  const acc_t x = v[0], y = v[1], z = v[2];
  out[0] = c * x + s * z;
  out[1] = y;
  out[2] = -s * x + c * z;
}

template <typename acc_t>
VMDM_HD void normalize3(acc_t* v) {
  const acc_t n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  const acc_t inv = acc_t(1) / (n > acc_t(1e-8) ? n : acc_t(1e-8));
  v[0] *= inv;
  v[1] *= inv;
  v[2] *= inv;
}

// Shortest-arc rotation (row-major 3x3) taking unit u to unit v; for v = -u a half
// turn about an axis perpendicular to u built from u's least aligned coordinate axis.
template <typename acc_t>
VMDM_HD void rotation_between_units(const acc_t* u, const acc_t* v, acc_t* R) {
  const acc_t c = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  if (c < acc_t(-1) + acc_t(1e-6)) {
    int k = 0;
    for (int i = 1; i < 3; ++i)
      if (fabs(u[i]) < fabs(u[k])) k = i;
    acc_t ax[3] = {acc_t(0), acc_t(0), acc_t(0)};
    ax[k] = acc_t(1);
    acc_t p[3] = {u[1] * ax[2] - u[2] * ax[1], u[2] * ax[0] - u[0] * ax[2], u[0] * ax[1] - u[1] * ax[0]};
    normalize3(p);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) R[3 * i + j] = acc_t(2) * p[i] * p[j] - (i == j ? acc_t(1) : acc_t(0));
    return;
  }
  const acc_t w[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]};
  const acc_t den = acc_t(1) + c;
  const acc_t k = acc_t(1) / (den > acc_t(1e-6) ? den : acc_t(1e-6));
  R[0] = c + w[0] * w[0] * k;
  R[1] = -w[2] + w[0] * w[1] * k;
  R[2] = w[1] + w[0] * w[2] * k;
  R[3] = w[2] + w[1] * w[0] * k;
  R[4] = c + w[1] * w[1] * k;
  R[5] = -w[0] + w[1] * w[2] * k;
  R[6] = -w[1] + w[2] * w[0] * k;
  R[7] = w[0] + w[2] * w[1] * k;
  R[8] = c + w[2] * w[2] * k;
}

// Frame t's joints in the clip's canonical frame: rotation_about_y(-yaw0) (X - origin).
template <typename scalar_t, typename acc_t>
VMDM_HD void canonical_points(const scalar_t* X, int J, const ClipFrame<acc_t>& cf, acc_t* P) {
  for (int j = 0; j < J; ++j) {
    const acc_t d[3] = {static_cast<acc_t>(X[3 * j]) - cf.ox, static_cast<acc_t>(X[3 * j + 1]) - cf.oy,
                        static_cast<acc_t>(X[3 * j + 2]) - cf.oz};
    rot_y(cf.cos0, cf.sin0, d, P + 3 * j);
  }
}

// One feature row from world frames t (Xt) and t+1 (Xn): writes D values to out,
// as (f - mean) / std when mean is not null. Needs sk.J <= MaxJ.
template <typename scalar_t, typename acc_t, int MaxJ = kMaxFeatureJoints>
VMDM_HD void encode_row(const scalar_t* Xt, const scalar_t* Xn, const FeatureSkeletonView& sk,
                        const ClipFrame<acc_t>& cf, acc_t feet_threshold, const scalar_t* mean, const scalar_t* std,
                        scalar_t* out) {
  const int J = sk.J;
  int o = 0;
  auto put = [&](acc_t f) {
    if (mean != nullptr) f = (f - static_cast<acc_t>(mean[o])) / static_cast<acc_t>(std[o]);
    out[o++] = static_cast<scalar_t>(f);
  };
  acc_t Pt[3 * MaxJ], Pn[3 * MaxJ];
  canonical_points(Xt, J, cf, Pt);
  canonical_points(Xn, J, cf, Pn);
  const acc_t yaw_t = wrap_angle<acc_t>(facing_yaw<scalar_t, acc_t>(Xt, sk.facing) - cf.yaw0);
  const acc_t yaw_n = wrap_angle<acc_t>(facing_yaw<scalar_t, acc_t>(Xn, sk.facing) - cf.yaw0);
  // Heading of frame t undone: rotation_about_y(-yaw_t).
  const acc_t ct = cos(-yaw_t), st = sin(-yaw_t);

  put(acc_t(-0.5) * wrap_angle<acc_t>(yaw_n - yaw_t));
  {
    const acc_t d[3] = {Pn[0] - Pt[0], Pn[1] - Pt[1], Pn[2] - Pt[2]};
    acc_t r[3];
    rot_y(cos(-yaw_n), sin(-yaw_n), d, r);
    put(r[0]);
    put(r[2]);
  }
  put(Pt[1]);

  for (int j = 1; j < J; ++j) {  // ric
    const acc_t d[3] = {Pt[3 * j] - Pt[0], Pt[3 * j + 1], Pt[3 * j + 2] - Pt[2]};
    acc_t r[3];
    rot_y(ct, st, d, r);
    put(r[0]);
    put(r[1]);
    put(r[2]);
  }

  // Bone rotations: frame of the bone ending at each joint, the heading at the root.
  acc_t Fr[9 * MaxJ];
  {
    const acc_t c = cos(yaw_t), s = sin(yaw_t);
    const acc_t H[9] = {c, acc_t(0), s, acc_t(0), acc_t(1), acc_t(0), -s, acc_t(0), c};
    for (int i = 0; i < 9; ++i) Fr[i] = H[i];
  }
  const int rot0 = o;
  for (int k = 0; k < J - 1; ++k) {
    const int c = sk.child[k], p = sk.parent[k];
    const acc_t* Fp = Fr + 9 * p;
    const acc_t v[3] = {Pt[3 * c] - Pt[3 * p], Pt[3 * c + 1] - Pt[3 * p + 1], Pt[3 * c + 2] - Pt[3 * p + 2]};
    acc_t vl[3];
    for (int i = 0; i < 3; ++i) vl[i] = Fp[i] * v[0] + Fp[3 + i] * v[1] + Fp[6 + i] * v[2];  // Fp^T v
    normalize3(vl);
    acc_t u[3] = {static_cast<acc_t>(sk.rest[3 * c]), static_cast<acc_t>(sk.rest[3 * c + 1]),
                  static_cast<acc_t>(sk.rest[3 * c + 2])};
    normalize3(u);
    acc_t L[9];
    rotation_between_units(u, vl, L);
    acc_t* Fc = Fr + 9 * c;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) Fc[3 * i + j] = Fp[3 * i] * L[j] + Fp[3 * i + 1] * L[3 + j] + Fp[3 * i + 2] * L[6 + j];
    // 6D: the first two columns.
    const acc_t six[6] = {L[0], L[3], L[6], L[1], L[4], L[7]};
    o = rot0 + 6 * (c - 1);
    for (int i = 0; i < 6; ++i) put(six[i]);
  }
  o = rot0 + 6 * (J - 1);

  for (int j = 0; j < J; ++j) {  // local velocities
    const acc_t d[3] = {Pn[3 * j] - Pt[3 * j], Pn[3 * j + 1] - Pt[3 * j + 1], Pn[3 * j + 2] - Pt[3 * j + 2]};
    acc_t r[3];
    rot_y(ct, st, d, r);
    put(r[0]);
    put(r[1]);
    put(r[2]);
  }
  for (int k = 0; k < sk.nfeet; ++k) {
    const int f = sk.feet[k];
    const acc_t dx = Pn[3 * f] - Pt[3 * f], dy = Pn[3 * f + 1] - Pt[3 * f + 1], dz = Pn[3 * f + 2] - Pt[3 * f + 2];
    put(dx * dx + dy * dy + dz * dz < feet_threshold ? acc_t(1) : acc_t(0));
  }
}

// A row past the clip's last feature frame: zeros, normalised like the rest.
template <typename scalar_t, typename acc_t>
VMDM_HD void encode_padding_row(int D, const scalar_t* mean, const scalar_t* std, scalar_t* out) {
  for (int o = 0; o < D; ++o) {
    const acc_t f = mean != nullptr ? (acc_t(0) - static_cast<acc_t>(mean[o])) / static_cast<acc_t>(std[o]) : acc_t(0);
    out[o] = static_cast<scalar_t>(f);
  }
}

}  // namespace vmdm
