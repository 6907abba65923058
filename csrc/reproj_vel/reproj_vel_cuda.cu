// CUDA kernels for the fused depth-weighted reprojection + 2D velocity loss.
//
// Forward (reproj_vel_fwd_kernel): one block per (sample b, tile of TT frames,
// chunk of joints). The block stages its frames plus one halo frame after the
// tile into shared memory with coalesced loads, projects every staged point
// once (camera_math.h, the same code as the CPU kernel), keeps a per-point
// summary (u, v, keypoint, z, w, valid) in shared memory so the velocity term
// of frame t reads frame t+1's projection instead of recomputing it, and
// reduces its six partial sums in-block with warp shuffles. The per-(b, tile)
// partials are summed per sample in tile order by reproj_vel_finalize_kernel
// (or directly by the block when a sample is a single tile): deterministic,
// no floating-point atomics. Launches per forward: 1 or 2.
//
// Backward (reproj_vel_bwd_kernel): same tiling with a halo frame on each
// side. Every thread writes the gradient of its own points (no atomics):
// dL/dX through project_backward, dL/dK = -(du, dv). Camera / intrinsics
// gradients are per-point contributions in shared memory, summed per
// (b, frame, joint chunk) in joint order and then over time by at::sum on the
// host (deterministic). Launches per backward: 1 (+ the reductions for camera
// gradients when they are requested).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "../common/camera_math.h"
#include "../common/cuda_utils.cuh"
#include "../common/optional_data.h"
#include "reproj_vel.h"

namespace vmdm {
namespace {

using cuda::kCamGrad;
using cuda::kCamGradStride;
using cuda::Tile;
using cuda::Tiling;

template <typename scalar_t, typename acc_t>
struct ReprojInputs {
  const scalar_t* X;
  const scalar_t* K;
  const scalar_t* W;
  const scalar_t* cam;
  const scalar_t* intr;  // nullptr: f = 1, c = 0
  int mode;
  acc_t power, z_min;
  bool per_frame, with_pos, with_vel;
};

// Byte offsets into a block's dynamic shared memory.
struct ReprojSmem {
  size_t cams, u, v, ku, kv, z, w, valid, X, K, W, red, contrib, total;
};

// Partial sums, in the CPU kernel's order.
enum : int { kNumPos = 0, kDenPos, kNumVel, kDenVel, kZSum, kZCount, kStats };

template <typename scalar_t, typename acc_t>
VMDM_HD void finalize_sample(const acc_t* sum, int mode, acc_t power, bool with_pos, bool with_vel, scalar_t* lp,
                             scalar_t* lv, acc_t* st) {
  acc_t wb = acc_t(1);
  if (mode == kDepthSample) wb = sum[kZCount] > 0 ? depth_pow(sum[kZSum] / sum[kZCount], power) : acc_t(0);
  const acc_t pos = with_pos && sum[kDenPos] != acc_t(0) ? wb * sum[kNumPos] / sum[kDenPos] : acc_t(0);
  const acc_t vel = with_vel && sum[kDenVel] != acc_t(0) ? wb * sum[kNumVel] / sum[kDenVel] : acc_t(0);
  *lp = static_cast<scalar_t>(pos);
  *lv = static_cast<scalar_t>(vel);
  st[0] = wb;
  st[1] = sum[kDenPos];
  st[2] = sum[kDenVel];
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(cuda::kMaxThreads)
    reproj_vel_fwd_kernel(const ReprojInputs<scalar_t, acc_t> in, const Tiling g, const ReprojSmem L,
                          acc_t* __restrict__ partials, scalar_t* __restrict__ loss_pos,
                          scalar_t* __restrict__ loss_vel, acc_t* __restrict__ stats) {
  unsigned char* sm = cuda::dynamic_smem();
  auto* cams = cuda::smem_at<Camera<acc_t>>(sm, L.cams);
  auto* rX = cuda::smem_at<scalar_t>(sm, L.X);
  auto* rK = cuda::smem_at<scalar_t>(sm, L.K);
  auto* rW = cuda::smem_at<scalar_t>(sm, L.W);
  auto* su = cuda::smem_at<acc_t>(sm, L.u);
  auto* sv = cuda::smem_at<acc_t>(sm, L.v);
  auto* sku = cuda::smem_at<acc_t>(sm, L.ku);
  auto* skv = cuda::smem_at<acc_t>(sm, L.kv);
  auto* sz = cuda::smem_at<acc_t>(sm, L.z);
  auto* sw = cuda::smem_at<acc_t>(sm, L.w);
  auto* valid = cuda::smem_at<unsigned char>(sm, L.valid);
  auto* red = cuda::smem_at<acc_t>(sm, L.red);

  const Tile tl = cuda::tile_of(g, blockIdx.x);
  {
    scalar_t vX[3 * cuda::kPointsPerThread], vK[2 * cuda::kPointsPerThread], vW[cuda::kPointsPerThread];
    cuda::fetch_tile<3>(in.X, vX, g, tl);
    cuda::fetch_tile<2>(in.K, vK, g, tl);
    cuda::fetch_tile<1>(in.W, vW, g, tl);
    cuda::load_tile_cameras<scalar_t, acc_t>(in.cam, in.intr, in.per_frame, g, tl, cams);
    cuda::put_tile<3>(rX, vX, tl);
    cuda::put_tile<2>(rK, vK, tl);
    cuda::put_tile<1>(rW, vW, tl);
  }
  __syncthreads();

  acc_t s[kStats];
#pragma unroll
  for (int k = 0; k < kStats; ++k) s[k] = acc_t(0);
  const int c_begin = tl.c_off * tl.jn, c_end = c_begin + tl.ncentral;

  // Every staged point is projected once; central points add their position terms.
  for (int i = threadIdx.x; i < tl.npts; i += blockDim.x) {
    const int r = i / tl.jn;
    const Camera<acc_t>& c = cams[in.per_frame ? r : 0];
    ObservedPoint<acc_t> p;
    observe_point<scalar_t, acc_t>(c, rX + 3 * i, rK + 2 * i, rW[i], in.z_min, p);
    if (in.with_vel) {
      su[i] = p.u;
      sv[i] = p.v;
      sku[i] = p.ku;
      skv[i] = p.kv;
      sz[i] = p.z;
      sw[i] = p.w;
      valid[i] = p.valid ? 1 : 0;
    }
    if (i < c_begin || i >= c_end) continue;  // halo frame: projected for the velocity term only
    s[kDenPos] += p.w;
    if (!p.valid) continue;
    s[kZSum] += p.z;
    s[kZCount] += acc_t(1);
    if (in.with_pos) {
      acc_t ax, ay;
      axis_weights(in.mode, p.z, in.power, c, ax, ay);
      const acc_t du = p.u - p.ku, dv = p.v - p.kv;
      s[kNumPos] += p.w * (ax * du * du + ay * dv * dv);
    }
  }

  // Velocity pairs (t, t+1) of central frames t that have a successor; t+1 may be the halo.
  if (in.with_vel) {
    __syncthreads();
    const int last = tl.t1 < g.T ? tl.t1 : tl.t1 - 1;
    const int npairs = (last - tl.t0) * tl.jn;
    for (int k = threadIdx.x; k < npairs; k += blockDim.x) {
      const int i = c_begin + k, n = i + tl.jn;
      const acc_t pw = sw[i] * sw[n];
      s[kDenVel] += pw;
      if (!(valid[i] && valid[n])) continue;
      acc_t ax, ay;
      axis_weights(in.mode, acc_t(0.5) * (sz[i] + sz[n]), in.power, cams[in.per_frame ? i / tl.jn : 0], ax, ay);
      const acc_t eu = (su[n] - su[i]) - (sku[n] - sku[i]), ev = (sv[n] - sv[i]) - (skv[n] - skv[i]);
      s[kNumVel] += pw * (ax * eu * eu + ay * ev * ev);
    }
  }

  cuda::block_sum<kStats>(s, red);
  if (threadIdx.x == 0) {
    if (g.parts() == 1) {
      finalize_sample<scalar_t, acc_t>(s, in.mode, in.power, in.with_pos, in.with_vel, loss_pos + tl.b,
                                       loss_vel + tl.b, stats + 3 * tl.b);
    } else {
      acc_t* out = partials + (tl.b * g.parts() + tl.part) * kStats;
#pragma unroll
      for (int k = 0; k < kStats; ++k) out[k] = s[k];
    }
  }
}

// One thread per sample: the sample's partials in tile order (fixed order, deterministic).
template <typename scalar_t, typename acc_t>
__global__ void reproj_vel_finalize_kernel(const acc_t* __restrict__ partials, int64_t B, int parts, int mode,
                                           acc_t power, bool with_pos, bool with_vel, scalar_t* __restrict__ loss_pos,
                                           scalar_t* __restrict__ loss_vel, acc_t* __restrict__ stats) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  acc_t s[kStats];
#pragma unroll
  for (int k = 0; k < kStats; ++k) s[k] = acc_t(0);
  const acc_t* p = partials + b * parts * kStats;
  for (int q = 0; q < parts; ++q)
#pragma unroll
    for (int k = 0; k < kStats; ++k) s[k] += p[q * kStats + k];
  finalize_sample<scalar_t, acc_t>(s, mode, power, with_pos, with_vel, loss_pos + b, loss_vel + b, stats + 3 * b);
}

template <typename scalar_t, typename acc_t, bool kCamGrads>
__global__ void __launch_bounds__(cuda::kMaxThreads)
    reproj_vel_bwd_kernel(const ReprojInputs<scalar_t, acc_t> in, const Tiling g, const ReprojSmem L,
                          const acc_t* __restrict__ grad_pos, const acc_t* __restrict__ grad_vel,
                          const acc_t* __restrict__ stats, scalar_t* __restrict__ grad_joints,
                          scalar_t* __restrict__ grad_keypoints, acc_t* __restrict__ cam_part) {
  unsigned char* sm = cuda::dynamic_smem();
  auto* cams = cuda::smem_at<Camera<acc_t>>(sm, L.cams);
  auto* rX = cuda::smem_at<scalar_t>(sm, L.X);
  auto* rK = cuda::smem_at<scalar_t>(sm, L.K);
  auto* rW = cuda::smem_at<scalar_t>(sm, L.W);
  auto* su = cuda::smem_at<acc_t>(sm, L.u);
  auto* sv = cuda::smem_at<acc_t>(sm, L.v);
  auto* sku = cuda::smem_at<acc_t>(sm, L.ku);
  auto* skv = cuda::smem_at<acc_t>(sm, L.kv);
  auto* sz = cuda::smem_at<acc_t>(sm, L.z);
  auto* sw = cuda::smem_at<acc_t>(sm, L.w);
  auto* valid = cuda::smem_at<unsigned char>(sm, L.valid);
  auto* contrib = cuda::smem_at<acc_t>(sm, L.contrib);

  const Tile tl = cuda::tile_of(g, blockIdx.x);
  {
    scalar_t vX[3 * cuda::kPointsPerThread], vK[2 * cuda::kPointsPerThread], vW[cuda::kPointsPerThread];
    cuda::fetch_tile<3>(in.X, vX, g, tl);
    cuda::fetch_tile<2>(in.K, vK, g, tl);
    cuda::fetch_tile<1>(in.W, vW, g, tl);
    cuda::load_tile_cameras<scalar_t, acc_t>(in.cam, in.intr, in.per_frame, g, tl, cams);
    cuda::put_tile<3>(rX, vX, tl);
    cuda::put_tile<2>(rK, vK, tl);
    cuda::put_tile<1>(rW, vW, tl);
  }

  // Per-sample chain-rule coefficients: dL/d(term) = upstream * w_b / denominator.
  const int64_t b = tl.b;
  const acc_t wb = stats[3 * b], den_pos = stats[3 * b + 1], den_vel = stats[3 * b + 2];
  const acc_t cpos = in.with_pos && den_pos != acc_t(0) ? acc_t(2) * grad_pos[b] * wb / den_pos : acc_t(0);
  const acc_t cvel = in.with_vel && den_vel != acc_t(0) ? acc_t(2) * grad_vel[b] * wb / den_vel : acc_t(0);
  __syncthreads();

  // Projections of every staged frame (halos included), read by the neighbours' velocity terms.
  if (in.with_vel) {
    for (int i = threadIdx.x; i < tl.npts; i += blockDim.x) {
      ObservedPoint<acc_t> p;
      observe_point<scalar_t, acc_t>(cams[in.per_frame ? i / tl.jn : 0], rX + 3 * i, rK + 2 * i, rW[i], in.z_min,
                                     p);
      su[i] = p.u;
      sv[i] = p.v;
      sku[i] = p.ku;
      skv[i] = p.kv;
      sz[i] = p.z;
      sw[i] = p.w;
      valid[i] = p.valid ? 1 : 0;
    }
    __syncthreads();
  }

  // Each thread: gradients of its own central points, written over their staged inputs
  // (only the point's own thread reads them from here on).
  for (int k = threadIdx.x; k < tl.ncentral; k += blockDim.x) {
    const int i = tl.c_off * tl.jn + k;
    const int r = i / tl.jn;
    const int t = tl.lo + r;
    const Camera<acc_t>& c = cams[in.per_frame ? r : 0];
    ObservedPoint<acc_t> p;
    observe_point<scalar_t, acc_t>(c, rX + 3 * i, rK + 2 * i, rW[i], in.z_min, p);
    acc_t gu = 0, gv = 0, g3[3] = {0, 0, 0};
    acc_t cg[kCamGrad];
#pragma unroll
    for (int q = 0; q < kCamGrad; ++q) cg[q] = acc_t(0);
    if (p.valid) {
      acc_t ax, ay;
      if (in.with_pos) {
        axis_weights(in.mode, p.z, in.power, c, ax, ay);
        gu += cpos * p.w * ax * (p.u - p.ku);
        gv += cpos * p.w * ay * (p.v - p.kv);
      }
      if (in.with_vel && t + 1 < g.T && valid[i + tl.jn]) {
        const int n = i + tl.jn;
        axis_weights(in.mode, acc_t(0.5) * (p.z + sz[n]), in.power, c, ax, ay);
        const acc_t cc = cvel * p.w * sw[n];
        gu -= cc * ax * ((su[n] - p.u) - (sku[n] - p.ku));
        gv -= cc * ay * ((sv[n] - p.v) - (skv[n] - p.kv));
      }
      if (in.with_vel && t > 0 && valid[i - tl.jn]) {
        const int q = i - tl.jn;
        axis_weights(in.mode, acc_t(0.5) * (p.z + sz[q]), in.power, c, ax, ay);
        const acc_t cc = cvel * p.w * sw[q];
        gu += cc * ax * ((p.u - su[q]) - (p.ku - sku[q]));
        gv += cc * ay * ((p.v - sv[q]) - (p.kv - skv[q]));
      }
      if constexpr (kCamGrads) {
        project_backward<acc_t>(c, p, gu, gv, g3, cg, cg + 12);
      } else {
        project_backward<acc_t>(c, p, gu, gv, g3, nullptr, nullptr);
      }
    }
#pragma unroll
    for (int q = 0; q < 3; ++q) rX[3 * i + q] = static_cast<scalar_t>(g3[q]);
    // The loss depends on keypoints only through (projection - keypoint).
    rK[2 * i] = static_cast<scalar_t>(-gu);
    rK[2 * i + 1] = static_cast<scalar_t>(-gv);
    if constexpr (kCamGrads) {
#pragma unroll
      for (int q = 0; q < kCamGrad; ++q) contrib[k * kCamGradStride + q] = cg[q];
    }
  }
  __syncthreads();

  cuda::store_central<3>(grad_joints, rX + 3 * tl.c_off * tl.jn, g, tl);
  if (grad_keypoints != nullptr) cuda::store_central<2>(grad_keypoints, rK + 2 * tl.c_off * tl.jn, g, tl);
  if constexpr (kCamGrads) cuda::store_camera_rows<acc_t>(contrib, cam_part, g, tl);
}

// Tiling and shared-memory layout of one pass.
template <typename scalar_t, typename acc_t>
std::pair<Tiling, ReprojSmem> plan(int64_t B, int64_t T, int64_t J, bool per_frame, bool with_vel, bool backward,
                                   bool cam_grads) {
  const size_t cam_bytes = sizeof(Camera<acc_t>);
  const size_t summary = with_vel ? 6 * sizeof(acc_t) + 1 : 0;
  const size_t per_point = 6 * sizeof(scalar_t) + summary + (cam_grads ? kCamGradStride * sizeof(acc_t) : 0);
  const size_t per_row = per_frame ? cam_bytes : 0;
  const size_t fixed = (per_frame ? 0 : cam_bytes) + (backward ? 0 : 32 * kStats * sizeof(acc_t)) + 16 * 16;
  const int halo_lo = backward && with_vel ? 1 : 0, halo_hi = with_vel ? 1 : 0;
  const Tiling g = cuda::make_tiling(B, T, J, halo_lo, halo_hi, per_point, per_row, fixed, cuda::tiling_sms());
  cuda::SmemCarver c;
  ReprojSmem L{};
  const int P = g.max_pts, S = with_vel ? g.max_pts : 0;
  L.cams = c.take<Camera<acc_t>>(per_frame ? g.max_rows : 1);
  L.u = c.take<acc_t>(S);
  L.v = c.take<acc_t>(S);
  L.ku = c.take<acc_t>(S);
  L.kv = c.take<acc_t>(S);
  L.z = c.take<acc_t>(S);
  L.w = c.take<acc_t>(S);
  L.red = c.take<acc_t>(backward ? 0 : 32 * kStats);
  L.contrib = c.take<acc_t>(cam_grads ? static_cast<int64_t>(g.max_pts) * kCamGradStride : 0);
  L.X = c.take<scalar_t>(3 * P);
  L.K = c.take<scalar_t>(2 * P);
  L.W = c.take<scalar_t>(P);
  L.valid = c.take<unsigned char>(S);
  L.total = c.size;
  return {g, L};
}

template <typename scalar_t, typename acc_t>
ReprojInputs<scalar_t, acc_t> make_inputs(const at::Tensor& joints, const at::Tensor& keypoints,
                                          const at::Tensor& camera, const at::Tensor& weights,
                                          const std::optional<at::Tensor>& intrinsics, int64_t depth_mode,
                                          double depth_power, double z_min, bool with_pos, bool with_vel) {
  ReprojInputs<scalar_t, acc_t> in;
  in.X = joints.data_ptr<scalar_t>();
  in.K = keypoints.data_ptr<scalar_t>();
  in.W = weights.data_ptr<scalar_t>();
  in.cam = camera.data_ptr<scalar_t>();
  in.intr = optional_data<scalar_t>(intrinsics);
  in.mode = static_cast<int>(depth_mode);
  in.power = static_cast<acc_t>(depth_power);
  in.z_min = static_cast<acc_t>(z_min);
  in.per_frame = camera.dim() == 4;
  in.with_pos = with_pos;
  in.with_vel = with_vel;
  return in;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> reproj_vel_fwd_cuda(
    const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera, const at::Tensor& weights,
    const std::optional<at::Tensor>& intrinsics, int64_t depth_mode, double depth_power, double z_min,
    bool with_pos, bool with_vel) {
  cuda::DeviceGuard guard(joints.device());
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const auto acc = joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto loss_pos = at::empty({B}, joints.options());
  auto loss_vel = at::empty({B}, joints.options());
  auto stats = at::empty({B, 3}, joints.options().dtype(acc));
  if (B == 0) return {loss_pos, loss_vel, stats};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "reproj_vel_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto in = make_inputs<scalar_t, acc_t>(joints, keypoints, camera, weights, intrinsics, depth_mode,
                                                 depth_power, z_min, with_pos, with_vel);
    const auto [g, L] = plan<scalar_t, acc_t>(B, T, J, in.per_frame, with_vel, /*backward=*/false, false);
    const int parts = g.parts();
    auto* lp = loss_pos.data_ptr<scalar_t>();
    auto* lv = loss_vel.data_ptr<scalar_t>();
    auto* st = stats.data_ptr<acc_t>();
    if (parts == 1) {  // the block reduces the whole sample and finalises it
      cuda::launch(reproj_vel_fwd_kernel<scalar_t, acc_t>, g.blocks(), g.threads, L.total, in, g, L,
                   static_cast<acc_t*>(nullptr), lp, lv, st);
      return;
    }
    // parts == 0 (T or J is 0): the finalisation alone gives the empty-sum results.
    auto partials = at::empty({B * parts * kStats}, joints.options().dtype(acc));
    acc_t* part_ptr = partials.data_ptr<acc_t>();
    cuda::launch(reproj_vel_fwd_kernel<scalar_t, acc_t>, g.blocks(), g.threads, L.total, in, g, L, part_ptr, lp,
                 lv, st);
    constexpr int kFinalThreads = 128;
    cuda::launch(reproj_vel_finalize_kernel<scalar_t, acc_t>, (B + kFinalThreads - 1) / kFinalThreads,
                 kFinalThreads, 0, static_cast<const acc_t*>(part_ptr), B, parts, in.mode, in.power, with_pos,
                 with_vel, lp, lv, st);
  });
  return {loss_pos, loss_vel, stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> reproj_vel_bwd_cuda(
    const at::Tensor& grad_pos, const at::Tensor& grad_vel, const at::Tensor& joints, const at::Tensor& keypoints,
    const at::Tensor& camera, const at::Tensor& weights, const std::optional<at::Tensor>& intrinsics,
    const at::Tensor& stats, int64_t depth_mode, double depth_power, double z_min, bool with_pos, bool with_vel,
    bool need_keypoints, bool need_camera, bool need_intrinsics) {
  cuda::DeviceGuard guard(joints.device());
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  const bool per_frame = camera.dim() == 4;
  const auto acc_opts = joints.options().dtype(joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  auto grad_joints = at::empty_like(joints, at::MemoryFormat::Contiguous);
  auto grad_keypoints = need_keypoints ? at::empty_like(keypoints, at::MemoryFormat::Contiguous)
                                       : at::empty({0}, joints.options());
  const bool cam_grads = need_camera || need_intrinsics;
  at::Tensor cam_part;
  int nchunks = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "reproj_vel_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto in = make_inputs<scalar_t, acc_t>(joints, keypoints, camera, weights, intrinsics, depth_mode,
                                                 depth_power, z_min, with_pos, with_vel);
    const auto [g, L] = plan<scalar_t, acc_t>(B, T, J, per_frame, with_vel, /*backward=*/true, cam_grads);
    nchunks = g.nchunks;
    if (cam_grads) cam_part = at::empty({B, T, g.nchunks, kCamGrad}, acc_opts);
    if (g.blocks() == 0) return;
    const acc_t* gp = grad_pos.data_ptr<acc_t>();
    const acc_t* gv = grad_vel.data_ptr<acc_t>();
    const acc_t* st = stats.data_ptr<acc_t>();
    scalar_t* gX = grad_joints.data_ptr<scalar_t>();
    scalar_t* gK = need_keypoints ? grad_keypoints.data_ptr<scalar_t>() : nullptr;
    if (cam_grads) {
      cuda::launch(reproj_vel_bwd_kernel<scalar_t, acc_t, true>, g.blocks(), g.threads, L.total, in, g, L, gp, gv,
                   st, gX, gK, cam_part.data_ptr<acc_t>());
    } else {
      cuda::launch(reproj_vel_bwd_kernel<scalar_t, acc_t, false>, g.blocks(), g.threads, L.total, in, g, L, gp, gv,
                   st, gX, gK, static_cast<acc_t*>(nullptr));
    }
  });
  // Camera / intrinsics: per-(b, frame, joint chunk) rows summed over chunks (and time for per-clip tensors).
  at::Tensor grad_camera = at::empty({0}, joints.options());
  if (need_camera) {
    auto part = cam_part.narrow(3, 0, 12);
    at::Tensor rows = per_frame ? (nchunks == 1 ? part.select(2, 0) : part.sum(2)) : part.sum({1, 2});
    grad_camera = rows.reshape(camera.sizes()).to(joints.scalar_type()).contiguous();
  }
  at::Tensor grad_intrinsics = need_intrinsics
                                   ? cam_part.narrow(3, 12, 4).sum({1, 2}).to(joints.scalar_type()).contiguous()
                                   : at::empty({0}, joints.options());
  return {grad_joints, grad_keypoints, grad_camera, grad_intrinsics};
}

}  // namespace vmdm
