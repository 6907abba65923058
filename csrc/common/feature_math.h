// Per-frame HumanML3D feature encoding shared by the CPU and CUDA kernels.
// Math and channel layout: vmdm_kernels/ref/motion_features.py.
//
// Three stages, each independent per clip or per frame: the clip's canonical
// frame (ClipFrame: the floor, frame 0's root and heading); every frame's root
// rotation (its IK facing direction, Gaussian-smoothed over the clip's frames,
// as HumanML3D's process_file); then every feature row t reads frames t and
// t+1 and their root rotations only. All arithmetic is in acc_t (float for
// half/bfloat16/float inputs, double for double).
#pragma once

#include <cmath>
#include <cstdint>

#include "camera_math.h"  // VMDM_HD

namespace vmdm {

#if !defined(__CUDACC__)
// Host builds: the float overloads (CUDA provides them for device code).
using std::asin;
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
  // The joint whose bone's world arc is bone k's frame, or -1 for the root rotation
  // (HumanML3D's kinematic chains restart from the root rotation).
  int frame[kMaxFeatureJoints];
  double rest[3 * kMaxFeatureJoints];  // rest vector of the bone ending at each joint (any length)
};

template <typename acc_t>
struct ClipFrame {
  acc_t ox, oy, oz;  // canonical origin: frame 0's root over the clip's lowest joint
  acc_t cos0, sin0;  // of -yaw0
  acc_t yaw0;
  int64_t len;       // valid frames, clamped to [2, T]
};

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

// Rotation about y given as the (w, y) parts of its unit quaternion, applied to v.
template <typename acc_t>
VMDM_HD void yaw_rotate(const acc_t* q, const acc_t* v, acc_t* out) {
  rot_y(acc_t(1) - acc_t(2) * q[1] * q[1], acc_t(2) * q[0] * q[1], v, out);
}

// Unit quaternion (w, x, y, z) of the shortest arc from direction u to direction v
// (HumanML3D's qbetween); for opposite directions a half turn about an axis
// perpendicular to u built from u's least aligned coordinate axis.
template <typename acc_t>
VMDM_HD void quaternion_between(const acc_t* u_in, const acc_t* v_in, acc_t* q) {
  acc_t u[3] = {u_in[0], u_in[1], u_in[2]}, v[3] = {v_in[0], v_in[1], v_in[2]};
  normalize3(u);
  normalize3(v);
  const acc_t c = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  if (c < acc_t(-1) + acc_t(1e-6)) {
    int k = 0;
    for (int i = 1; i < 3; ++i)
      if (fabs(u[i]) < fabs(u[k])) k = i;
    acc_t ax[3] = {acc_t(0), acc_t(0), acc_t(0)};
    ax[k] = acc_t(1);
    acc_t p[3] = {u[1] * ax[2] - u[2] * ax[1], u[2] * ax[0] - u[0] * ax[2], u[0] * ax[1] - u[1] * ax[0]};
    normalize3(p);
    q[0] = acc_t(0);
    q[1] = p[0];
    q[2] = p[1];
    q[3] = p[2];
    return;
  }
  q[0] = acc_t(1) + c;
  q[1] = u[1] * v[2] - u[2] * v[1];
  q[2] = u[2] * v[0] - u[0] * v[2];
  q[3] = u[0] * v[1] - u[1] * v[0];
  const acc_t n = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const acc_t inv = acc_t(1) / (n > acc_t(1e-8) ? n : acc_t(1e-8));
  for (int i = 0; i < 4; ++i) q[i] *= inv;
}

// conj(a) * b for unit quaternions: b seen from the frame a.
template <typename acc_t>
VMDM_HD void quaternion_relative(const acc_t* a, const acc_t* b, acc_t* q) {
  const acc_t aw = a[0], ax = -a[1], ay = -a[2], az = -a[3];
  q[0] = aw * b[0] - ax * b[1] - ay * b[2] - az * b[3];
  q[1] = aw * b[1] + ax * b[0] + ay * b[3] - az * b[2];
  q[2] = aw * b[2] - ax * b[3] + ay * b[0] + az * b[1];
  q[3] = aw * b[3] + ax * b[2] - ay * b[1] + az * b[0];
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

// A frame's unsmoothed facing (x, z) in the canonical frame, as HumanML3D's inverse
// kinematics measures it: up x normalised (left hip - right hip + right shoulder - left
// shoulder) -- its hip term is reversed against the canonical frame's.
template <typename scalar_t, typename acc_t>
VMDM_HD void ik_facing(const scalar_t* X, const FeatureSkeletonView& sk, const ClipFrame<acc_t>& cf, acc_t* f) {
  const int rh = sk.facing[0], lh = sk.facing[1], rs = sk.facing[2], ls = sk.facing[3];
  acc_t a[3];
  for (int i = 0; i < 3; ++i)
    a[i] = (static_cast<acc_t>(X[3 * lh + i]) - static_cast<acc_t>(X[3 * rh + i])) +
           (static_cast<acc_t>(X[3 * rs + i]) - static_cast<acc_t>(X[3 * ls + i]));
  acc_t c[3];
  rot_y(cf.cos0, cf.sin0, a, c);
  normalize3(c);
  f[0] = c[2];
  f[1] = -c[0];
}

// Gaussian taps of gaussian_filter1d (radius int(4 sigma + 0.5)), normalised to sum 1.
inline int gaussian_radius(double sigma) { return sigma > 0 ? static_cast<int>(4.0 * sigma + 0.5) : 0; }

// Frame t's root rotation (w, y) from the clip's unsmoothed facings f [len, 2]: the
// smoothed facing (edges repeated) taken to +z by the shortest arc; identity at frame 0.
// taps [2 radius + 1] are the Gaussian's, cum [2 radius + 2] their running sums: the taps
// that fall past either end of the clip weigh its first or last frame in one product, so
// every frame costs one contiguous loop over the taps inside the clip.
template <typename acc_t>
VMDM_HD void root_rotation(const acc_t* f, int64_t t, int64_t len, const acc_t* taps, const acc_t* cum, int radius,
                           acc_t* q) {
  if (t == 0) {
    q[0] = acc_t(1);
    q[1] = acc_t(0);
    return;
  }
  const int64_t lo = t - radius < 0 ? 0 : t - radius;
  const int64_t hi = t + radius > len - 1 ? len - 1 : t + radius;
  const int64_t n_lo = radius - t > 0 ? radius - t : 0;                   // taps before frame 0
  const int64_t n_hi = t + radius - (len - 1) > 0 ? t + radius - (len - 1) : 0;  // taps past the end
  const acc_t w_lo = cum[n_lo], w_hi = cum[2 * radius + 1] - cum[2 * radius + 1 - n_hi];
  acc_t sx = w_lo * f[0] + w_hi * f[2 * (len - 1)];
  acc_t sz = w_lo * f[1] + w_hi * f[2 * (len - 1) + 1];
  const acc_t* window = taps + (lo - t + radius);
  for (int64_t s = lo; s <= hi; ++s) {
    sx += window[s - lo] * f[2 * s];
    sz += window[s - lo] * f[2 * s + 1];
  }
  const acc_t n = sqrt(sx * sx + sz * sz);
  const acc_t inv = acc_t(1) / (n > acc_t(1e-8) ? n : acc_t(1e-8));
  const acc_t w = acc_t(1) + sz * inv, y = -sx * inv;
  const acc_t m = sqrt(w * w + y * y);
  if (m < acc_t(1e-6)) {  // facing -z exactly: a half turn about y
    q[0] = acc_t(0);
    q[1] = acc_t(1);
    return;
  }
  q[0] = w / m;
  q[1] = y / m;
}

// One feature row from world frames t (Xt) and t+1 (Xn) and their root rotations qt,
// qn: writes D values to out, as (f - mean) / std when mean is not null. Needs sk.J <= MaxJ.
template <typename scalar_t, typename acc_t, int MaxJ = kMaxFeatureJoints>
VMDM_HD void encode_row(const scalar_t* Xt, const scalar_t* Xn, const acc_t* qt, const acc_t* qn,
                        const FeatureSkeletonView& sk, const ClipFrame<acc_t>& cf, acc_t feet_threshold,
                        const scalar_t* mean, const scalar_t* std, scalar_t* out) {
  const int J = sk.J;
  int o = 0;
  auto put = [&](acc_t f) {
    if (mean != nullptr) f = (f - static_cast<acc_t>(mean[o])) / static_cast<acc_t>(std[o]);
    out[o++] = static_cast<scalar_t>(f);
  };
  acc_t Pt[3 * MaxJ], Pn[3 * MaxJ];
  canonical_points(Xt, J, cf, Pt);
  canonical_points(Xn, J, cf, Pn);

  {  // y part of qn conj(qt), the sign taken for the shorter way round (quaternion continuity)
    const acc_t dot = qn[0] * qt[0] + qn[1] * qt[1];
    acc_t s = qn[1] * qt[0] - qn[0] * qt[1];
    s = dot < acc_t(0) ? -s : s;
    s = s > acc_t(1) ? acc_t(1) : (s < acc_t(-1) ? acc_t(-1) : s);
    put(asin(s));
  }
  {
    const acc_t d[3] = {Pn[0] - Pt[0], Pn[1] - Pt[1], Pn[2] - Pt[2]};
    acc_t r[3];
    yaw_rotate(qn, d, r);
    put(r[0]);
    put(r[2]);
  }
  put(Pt[1]);

  for (int j = 1; j < J; ++j) {  // ric
    const acc_t d[3] = {Pt[3 * j] - Pt[0], Pt[3 * j + 1], Pt[3 * j + 2] - Pt[2]};
    acc_t r[3];
    yaw_rotate(qt, d, r);
    put(r[0]);
    put(r[1]);
    put(r[2]);
  }

  // Bone rotations: each bone's world arc seen from its frame (the root rotation or
  // the arc of the bone before it on its chain); bones come parent first.
  acc_t A[4 * MaxJ];
  const int rot0 = o;
  for (int k = 0; k < J - 1; ++k) {
    const int c = sk.child[k], p = sk.parent[k], f = sk.frame[k];
    const acc_t v[3] = {Pt[3 * c] - Pt[3 * p], Pt[3 * c + 1] - Pt[3 * p + 1], Pt[3 * c + 2] - Pt[3 * p + 2]};
    const acc_t u[3] = {static_cast<acc_t>(sk.rest[3 * c]), static_cast<acc_t>(sk.rest[3 * c + 1]),
                        static_cast<acc_t>(sk.rest[3 * c + 2])};
    acc_t* Ac = A + 4 * c;
    quaternion_between(u, v, Ac);
    const acc_t root[4] = {qt[0], acc_t(0), qt[1], acc_t(0)};
    acc_t L[4];
    quaternion_relative(f < 0 ? root : A + 4 * f, Ac, L);
    const acc_t r = L[0], i = L[1], jj = L[2], kk = L[3];
    // 6D: the first two columns of L's rotation matrix.
    const acc_t six[6] = {acc_t(1) - acc_t(2) * (jj * jj + kk * kk), acc_t(2) * (i * jj + kk * r),
                          acc_t(2) * (i * kk - jj * r),          acc_t(2) * (i * jj - kk * r),
                          acc_t(1) - acc_t(2) * (i * i + kk * kk), acc_t(2) * (jj * kk + i * r)};
    o = rot0 + 6 * (c - 1);
    for (int e = 0; e < 6; ++e) put(six[e]);
  }
  o = rot0 + 6 * (J - 1);

  for (int j = 0; j < J; ++j) {  // local velocities
    const acc_t d[3] = {Pn[3 * j] - Pt[3 * j], Pn[3 * j + 1] - Pt[3 * j + 1], Pn[3 * j + 2] - Pt[3 * j + 2]};
    acc_t r[3];
    yaw_rotate(qt, d, r);
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
