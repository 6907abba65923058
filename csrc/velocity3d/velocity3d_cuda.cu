// CUDA kernels for the 3D finite-difference velocity loss.
//
// Forward (velocity3d_fwd_kernel): one block per (sample, tile of frames,
// chunk of joints); the tile plus one halo frame after it is staged in shared
// memory with coalesced loads, each thread sums the pairs (t, t+1) of its
// points, the block reduces (num, den) with warp shuffles and writes them to a
// per-(b, tile) partials buffer that velocity3d_finalize_kernel sums per sample
// in tile order (or the block finalises directly when a sample is one tile).
//
// Backward: the gradient needs the per-sample denominator before any value can
// be written, and the forward does not return it, so velocity3d_den_kernel
// first writes per-(b, tile) partial denominators (weights only: 1/7 of the
// bytes of the inputs); velocity3d_bwd_kernel then sums its sample's partials
// in fixed order, stages its tile with a halo frame on each side and writes
// the gradient of every central point from its own thread (no atomics).
// Launches: forward 1 or 2, backward 2.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "../common/cuda_utils.cuh"
#include "velocity3d.h"

namespace vmdm {
namespace {

using cuda::Tile;
using cuda::Tiling;

struct Vel3dSmem {
  size_t X, Y, W, out, red, total;
};

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(cuda::kMaxThreads)
    velocity3d_fwd_kernel(const scalar_t* __restrict__ X, const scalar_t* __restrict__ Y,
                          const scalar_t* __restrict__ W, const Tiling g, const Vel3dSmem L,
                          acc_t* __restrict__ partials, scalar_t* __restrict__ loss) {
  unsigned char* sm = cuda::dynamic_smem();
  auto* rX = cuda::smem_at<scalar_t>(sm, L.X);
  auto* rY = cuda::smem_at<scalar_t>(sm, L.Y);
  auto* rW = cuda::smem_at<scalar_t>(sm, L.W);
  auto* red = cuda::smem_at<acc_t>(sm, L.red);

  const Tile tl = cuda::tile_of(g, blockIdx.x);
  {
    scalar_t vX[3 * cuda::kPointsPerThread], vY[3 * cuda::kPointsPerThread], vW[cuda::kPointsPerThread];
    cuda::fetch_tile<3>(X, vX, g, tl);
    cuda::fetch_tile<3>(Y, vY, g, tl);
    cuda::fetch_tile<1>(W, vW, g, tl);
    cuda::put_tile<3>(rX, vX, tl);
    cuda::put_tile<3>(rY, vY, tl);
    cuda::put_tile<1>(rW, vW, tl);
  }
  __syncthreads();

  acc_t s[2] = {acc_t(0), acc_t(0)};  // num, den
  const int last = tl.t1 < g.T ? tl.t1 : tl.t1 - 1;  // central frames [t0, last) have a successor
  const int npairs = (last - tl.t0) * tl.jn;
  const int c_begin = tl.c_off * tl.jn;
  for (int k = threadIdx.x; k < npairs; k += blockDim.x) {
    const int i = c_begin + k, n = i + tl.jn;
    const acc_t pw = static_cast<acc_t>(rW[i]) * static_cast<acc_t>(rW[n]);
    if (pw == acc_t(0)) continue;  // ignored pair: its inputs may be non-finite
    acc_t e[3];
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      const acc_t dx = static_cast<acc_t>(rX[3 * n + q]) - static_cast<acc_t>(rX[3 * i + q]);
      const acc_t dy = static_cast<acc_t>(rY[3 * n + q]) - static_cast<acc_t>(rY[3 * i + q]);
      e[q] = dx - dy;
    }
    s[1] += pw;
    s[0] += pw * (e[0] * e[0] + e[1] * e[1] + e[2] * e[2]);
  }

  cuda::block_sum<2>(s, red);
  if (threadIdx.x == 0) {
    if (g.parts() == 1) {
      loss[tl.b] = static_cast<scalar_t>(s[1] != acc_t(0) ? s[0] / s[1] : acc_t(0));
    } else {
      partials[2 * (tl.b * g.parts() + tl.part)] = s[0];
      partials[2 * (tl.b * g.parts() + tl.part) + 1] = s[1];
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void velocity3d_finalize_kernel(const acc_t* __restrict__ partials, int64_t B, int parts,
                                           scalar_t* __restrict__ loss) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  acc_t n = 0, d = 0;
  for (int q = 0; q < parts; ++q) {
    n += partials[2 * (b * parts + q)];
    d += partials[2 * (b * parts + q) + 1];
  }
  loss[b] = static_cast<scalar_t>(d != acc_t(0) ? n / d : acc_t(0));
}

// Per-(b, tile) partial sums of the pair weights W_t W_t+1 (the loss denominator).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(cuda::kMaxThreads)
    velocity3d_den_kernel(const scalar_t* __restrict__ W, const Tiling g, acc_t* __restrict__ den_part) {
  auto* red = cuda::smem_at<acc_t>(cuda::dynamic_smem(), 0);
  const Tile tl = cuda::tile_of(g, blockIdx.x);
  const int last = tl.t1 < g.T ? tl.t1 : tl.t1 - 1;
  const int npairs = (last - tl.t0) * tl.jn;
  acc_t d[1] = {acc_t(0)};
  for (int k = threadIdx.x; k < npairs; k += blockDim.x) {
    const int r = k / tl.jn;
    const int64_t i = (tl.b * g.T + tl.t0 + r) * g.J + tl.j0 + (k - r * tl.jn);
    d[0] += static_cast<acc_t>(W[i]) * static_cast<acc_t>(W[i + g.J]);
  }
  cuda::block_sum<1>(d, red);
  if (threadIdx.x == 0) den_part[tl.b * g.parts() + tl.part] = d[0];
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(cuda::kMaxThreads)
    velocity3d_bwd_kernel(const acc_t* __restrict__ grad, const scalar_t* __restrict__ X,
                          const scalar_t* __restrict__ Y, const scalar_t* __restrict__ W, const Tiling g,
                          const Vel3dSmem L, const acc_t* __restrict__ den_part, scalar_t* __restrict__ grad_joints,
                          scalar_t* __restrict__ grad_target) {
  unsigned char* sm = cuda::dynamic_smem();
  auto* rX = cuda::smem_at<scalar_t>(sm, L.X);
  auto* rY = cuda::smem_at<scalar_t>(sm, L.Y);
  auto* rW = cuda::smem_at<scalar_t>(sm, L.W);
  auto* out = cuda::smem_at<scalar_t>(sm, L.out);

  const Tile tl = cuda::tile_of(g, blockIdx.x);
  {
    scalar_t vX[3 * cuda::kPointsPerThread], vY[3 * cuda::kPointsPerThread], vW[cuda::kPointsPerThread];
    cuda::fetch_tile<3>(X, vX, g, tl);
    cuda::fetch_tile<3>(Y, vY, g, tl);
    cuda::fetch_tile<1>(W, vW, g, tl);
    cuda::put_tile<3>(rX, vX, tl);
    cuda::put_tile<3>(rY, vY, tl);
    cuda::put_tile<1>(rW, vW, tl);
  }
  // The sample's denominator, summed in tile order by every thread (same value everywhere).
  acc_t den = 0;
  const int parts = g.parts();
  for (int q = 0; q < parts; ++q) den += den_part[tl.b * parts + q];
  const acc_t coef = den != acc_t(0) ? acc_t(2) * grad[tl.b] / den : acc_t(0);
  __syncthreads();

  for (int k = threadIdx.x; k < tl.ncentral; k += blockDim.x) {
    const int i = tl.c_off * tl.jn + k;
    const int t = tl.lo + i / tl.jn;
    acc_t gacc[3] = {0, 0, 0};
    // Pair (t-1, t) pulls frame t along +e, pair (t, t+1) along -e.
    if (t > 0) {
      const int q = i - tl.jn;
      const acc_t pw = static_cast<acc_t>(rW[q]) * static_cast<acc_t>(rW[i]);
      if (pw != acc_t(0)) {
#pragma unroll
        for (int c = 0; c < 3; ++c) {
          const acc_t dx = static_cast<acc_t>(rX[3 * i + c]) - static_cast<acc_t>(rX[3 * q + c]);
          const acc_t dy = static_cast<acc_t>(rY[3 * i + c]) - static_cast<acc_t>(rY[3 * q + c]);
          gacc[c] += coef * pw * (dx - dy);
        }
      }
    }
    if (t + 1 < g.T) {
      const int n = i + tl.jn;
      const acc_t pw = static_cast<acc_t>(rW[i]) * static_cast<acc_t>(rW[n]);
      if (pw != acc_t(0)) {
#pragma unroll
        for (int c = 0; c < 3; ++c) {
          const acc_t dx = static_cast<acc_t>(rX[3 * n + c]) - static_cast<acc_t>(rX[3 * i + c]);
          const acc_t dy = static_cast<acc_t>(rY[3 * n + c]) - static_cast<acc_t>(rY[3 * i + c]);
          gacc[c] -= coef * pw * (dx - dy);
        }
      }
    }
#pragma unroll
    for (int c = 0; c < 3; ++c) out[3 * k + c] = static_cast<scalar_t>(gacc[c]);
  }
  __syncthreads();
  cuda::store_central<3>(grad_joints, out, g, tl);
  if (grad_target != nullptr) cuda::store_central_neg<3>(grad_target, out, g, tl);
}

template <typename scalar_t, typename acc_t>
std::pair<Tiling, Vel3dSmem> plan(int64_t B, int64_t T, int64_t J, bool backward) {
  const size_t per_point = (backward ? 10 : 7) * sizeof(scalar_t);
  const size_t fixed = (backward ? 0 : 32 * 2 * sizeof(acc_t)) + 16 * 8;
  const Tiling g = cuda::make_tiling(B, T, J, backward ? 1 : 0, 1, per_point, 0, fixed, cuda::tiling_sms());
  cuda::SmemCarver c;
  Vel3dSmem L{};
  L.red = c.take<acc_t>(backward ? 0 : 32 * 2);
  L.X = c.take<scalar_t>(3 * g.max_pts);
  L.Y = c.take<scalar_t>(3 * g.max_pts);
  L.W = c.take<scalar_t>(g.max_pts);
  L.out = c.take<scalar_t>(backward ? 3 * g.max_pts : 0);
  L.total = c.size;
  return {g, L};
}

}  // namespace

at::Tensor velocity3d_fwd_cuda(const at::Tensor& joints, const at::Tensor& target, const at::Tensor& weights) {
  cuda::DeviceGuard guard(joints.device());
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  auto loss = at::empty({B}, joints.options());
  if (B == 0) return loss;
  const auto acc = joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "velocity3d_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto [g, L] = plan<scalar_t, acc_t>(B, T, J, /*backward=*/false);
    const scalar_t* X = joints.data_ptr<scalar_t>();
    const scalar_t* Y = target.data_ptr<scalar_t>();
    const scalar_t* W = weights.data_ptr<scalar_t>();
    scalar_t* out = loss.data_ptr<scalar_t>();
    const int parts = g.parts();
    if (parts == 1) {
      cuda::launch(velocity3d_fwd_kernel<scalar_t, acc_t>, g.blocks(), g.threads, L.total, X, Y, W, g, L,
                   static_cast<acc_t*>(nullptr), out);
      return;
    }
    auto partials = at::empty({B * parts * 2}, joints.options().dtype(acc));
    acc_t* part_ptr = partials.data_ptr<acc_t>();
    cuda::launch(velocity3d_fwd_kernel<scalar_t, acc_t>, g.blocks(), g.threads, L.total, X, Y, W, g, L, part_ptr,
                 out);
    constexpr int kFinalThreads = 128;
    cuda::launch(velocity3d_finalize_kernel<scalar_t, acc_t>, (B + kFinalThreads - 1) / kFinalThreads, kFinalThreads,
                 0, static_cast<const acc_t*>(part_ptr), B, parts, out);
  });
  return loss;
}

std::tuple<at::Tensor, at::Tensor> velocity3d_bwd_cuda(const at::Tensor& grad, const at::Tensor& joints,
                                                       const at::Tensor& target, const at::Tensor& weights,
                                                       bool need_target) {
  cuda::DeviceGuard guard(joints.device());
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  auto grad_joints = at::empty_like(joints, at::MemoryFormat::Contiguous);
  auto grad_target = need_target ? at::empty_like(target, at::MemoryFormat::Contiguous)
                                 : at::empty({0}, joints.options());
  if (grad_joints.numel() == 0) return {grad_joints, grad_target};
  const auto acc = joints.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "velocity3d_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto [g, L] = plan<scalar_t, acc_t>(B, T, J, /*backward=*/true);
    const scalar_t* X = joints.data_ptr<scalar_t>();
    const scalar_t* Y = target.data_ptr<scalar_t>();
    const scalar_t* W = weights.data_ptr<scalar_t>();
    auto den_part = at::empty({B * g.parts()}, joints.options().dtype(acc));
    acc_t* den_ptr = den_part.data_ptr<acc_t>();
    cuda::launch(velocity3d_den_kernel<scalar_t, acc_t>, g.blocks(), g.threads, 32 * sizeof(acc_t), W, g, den_ptr);
    cuda::launch(velocity3d_bwd_kernel<scalar_t, acc_t>, g.blocks(), g.threads, L.total, grad.data_ptr<acc_t>(), X,
                 Y, W, g, L, static_cast<const acc_t*>(den_ptr), grad_joints.data_ptr<scalar_t>(),
                 need_target ? grad_target.data_ptr<scalar_t>() : nullptr);
  });
  return {grad_joints, grad_target};
}

}  // namespace vmdm
