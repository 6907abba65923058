// CUDA kernels for the ray-projection pseudo-targets.
//
// A pointwise op, tiled like the losses so that a block converts each staged
// frame's camera once: one block per (sample, tile of frames, chunk of
// joints), inputs staged in shared memory with coalesced loads, one thread per
// point computes ray_forward / ray_backward (camera_math.h, shared with the
// CPU kernel) and writes its results over its own staged inputs, which the
// block then stores with coalesced writes. Camera / intrinsics gradients are
// per-point contributions in shared memory, summed per (b, frame, joint
// chunk) in joint order, then over chunks (and time for per-clip cameras) by
// at::sum on the host: deterministic, no atomics. One launch per pass.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "../common/camera_math.h"
#include "../common/cuda_utils.cuh"
#include "../common/optional_data.h"
#include "ray_targets.h"

namespace vmdm {
namespace {

using cuda::kCamGrad;
using cuda::kCamGradStride;
using cuda::Tile;
using cuda::Tiling;

struct RaySmem {
  size_t cams, G, X, K, contrib, total;
};

template <typename scalar_t>
struct RayInputs {
  const scalar_t* X;
  const scalar_t* K;
  const scalar_t* cam;
  const scalar_t* intr;  // nullptr: f = 1, c = 0
  bool per_frame;
};

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(cuda::kMaxThreads)
    ray_targets_fwd_kernel(const RayInputs<scalar_t> in, const Tiling g, const RaySmem L,
                           scalar_t* __restrict__ out) {
  unsigned char* sm = cuda::dynamic_smem();
  auto* cams = cuda::smem_at<Camera<acc_t>>(sm, L.cams);
  auto* rX = cuda::smem_at<scalar_t>(sm, L.X);
  auto* rK = cuda::smem_at<scalar_t>(sm, L.K);

  const Tile tl = cuda::tile_of(g, blockIdx.x);
  {
    scalar_t vX[3 * cuda::kPointsPerThread], vK[2 * cuda::kPointsPerThread];
    cuda::fetch_tile<3>(in.X, vX, g, tl);
    cuda::fetch_tile<2>(in.K, vK, g, tl);
    cuda::load_tile_cameras<scalar_t, acc_t>(in.cam, in.intr, in.per_frame, g, tl, cams);
    cuda::put_tile<3>(rX, vX, tl);
    cuda::put_tile<2>(rK, vK, tl);
  }
  __syncthreads();

  for (int i = threadIdx.x; i < tl.npts; i += blockDim.x) {
    const Camera<acc_t>& c = cams[in.per_frame ? i / tl.jn : 0];
    const acc_t x[3] = {static_cast<acc_t>(rX[3 * i]), static_cast<acc_t>(rX[3 * i + 1]),
                        static_cast<acc_t>(rX[3 * i + 2])};
    Ray<acc_t> q;
    acc_t p[3];
    ray_forward(c, x, static_cast<acc_t>(rK[2 * i]), static_cast<acc_t>(rK[2 * i + 1]), q, p);
#pragma unroll
    for (int k = 0; k < 3; ++k) rX[3 * i + k] = static_cast<scalar_t>(p[k]);
  }
  __syncthreads();
  cuda::store_central<3>(out, rX, g, tl);
}

template <typename scalar_t, typename acc_t, bool kCamGrads>
__global__ void __launch_bounds__(cuda::kMaxThreads)
    ray_targets_bwd_kernel(const scalar_t* __restrict__ grad, const RayInputs<scalar_t> in, const Tiling g,
                           const RaySmem L, scalar_t* __restrict__ grad_joints, scalar_t* __restrict__ grad_keypoints,
                           acc_t* __restrict__ cam_part) {
  unsigned char* sm = cuda::dynamic_smem();
  auto* cams = cuda::smem_at<Camera<acc_t>>(sm, L.cams);
  auto* rG = cuda::smem_at<scalar_t>(sm, L.G);
  auto* rX = cuda::smem_at<scalar_t>(sm, L.X);
  auto* rK = cuda::smem_at<scalar_t>(sm, L.K);
  auto* contrib = cuda::smem_at<acc_t>(sm, L.contrib);

  const Tile tl = cuda::tile_of(g, blockIdx.x);
  {
    scalar_t vG[3 * cuda::kPointsPerThread], vX[3 * cuda::kPointsPerThread], vK[2 * cuda::kPointsPerThread];
    cuda::fetch_tile<3>(grad, vG, g, tl);
    cuda::fetch_tile<3>(in.X, vX, g, tl);
    cuda::fetch_tile<2>(in.K, vK, g, tl);
    cuda::load_tile_cameras<scalar_t, acc_t>(in.cam, in.intr, in.per_frame, g, tl, cams);
    cuda::put_tile<3>(rG, vG, tl);
    cuda::put_tile<3>(rX, vX, tl);
    cuda::put_tile<2>(rK, vK, tl);
  }
  __syncthreads();

  for (int i = threadIdx.x; i < tl.npts; i += blockDim.x) {
    const Camera<acc_t>& c = cams[in.per_frame ? i / tl.jn : 0];
    const acc_t x[3] = {static_cast<acc_t>(rX[3 * i]), static_cast<acc_t>(rX[3 * i + 1]),
                        static_cast<acc_t>(rX[3 * i + 2])};
    const acc_t gp[3] = {static_cast<acc_t>(rG[3 * i]), static_cast<acc_t>(rG[3 * i + 1]),
                         static_cast<acc_t>(rG[3 * i + 2])};
    Ray<acc_t> q;
    acc_t p[3], gx[3], gu, gv;
    ray_forward(c, x, static_cast<acc_t>(rK[2 * i]), static_cast<acc_t>(rK[2 * i + 1]), q, p);
    acc_t cg[kCamGrad];
#pragma unroll
    for (int k = 0; k < kCamGrad; ++k) cg[k] = acc_t(0);
    if constexpr (kCamGrads) {
      ray_backward(c, q, gp, gx, gu, gv, cg, cg + 12);
    } else {
      ray_backward<acc_t>(c, q, gp, gx, gu, gv, nullptr, nullptr);
    }
#pragma unroll
    for (int k = 0; k < 3; ++k) rX[3 * i + k] = static_cast<scalar_t>(gx[k]);
    rK[2 * i] = static_cast<scalar_t>(gu);
    rK[2 * i + 1] = static_cast<scalar_t>(gv);
    if constexpr (kCamGrads) {
#pragma unroll
      for (int k = 0; k < kCamGrad; ++k) contrib[i * kCamGradStride + k] = cg[k];
    }
  }
  __syncthreads();
  cuda::store_central<3>(grad_joints, rX, g, tl);
  if (grad_keypoints != nullptr) cuda::store_central<2>(grad_keypoints, rK, g, tl);
  if constexpr (kCamGrads) cuda::store_camera_rows<acc_t>(contrib, cam_part, g, tl);
}

template <typename scalar_t, typename acc_t>
std::pair<Tiling, RaySmem> plan(int64_t B, int64_t T, int64_t J, bool per_frame, bool backward, bool cam_grads) {
  const size_t cam_bytes = sizeof(Camera<acc_t>);
  const size_t per_point =
      (backward ? 8 : 5) * sizeof(scalar_t) + (cam_grads ? kCamGradStride * sizeof(acc_t) : 0);
  const size_t fixed = (per_frame ? 0 : cam_bytes) + 16 * 8;
  const Tiling g = cuda::make_tiling(B, T, J, 0, 0, per_point, per_frame ? cam_bytes : 0, fixed, cuda::tiling_sms());
  cuda::SmemCarver c;
  RaySmem L{};
  L.cams = c.take<Camera<acc_t>>(per_frame ? g.max_rows : 1);
  L.contrib = c.take<acc_t>(cam_grads ? static_cast<int64_t>(g.max_pts) * kCamGradStride : 0);
  L.G = c.take<scalar_t>(backward ? 3 * g.max_pts : 0);
  L.X = c.take<scalar_t>(3 * g.max_pts);
  L.K = c.take<scalar_t>(2 * g.max_pts);
  L.total = c.size;
  return {g, L};
}

template <typename scalar_t>
RayInputs<scalar_t> make_inputs(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
                                const std::optional<at::Tensor>& intrinsics) {
  RayInputs<scalar_t> in;
  in.X = joints.data_ptr<scalar_t>();
  in.K = keypoints.data_ptr<scalar_t>();
  in.cam = camera.data_ptr<scalar_t>();
  in.intr = optional_data<scalar_t>(intrinsics);
  in.per_frame = camera.dim() == 4;
  return in;
}

}  // namespace

at::Tensor ray_targets_fwd_cuda(const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
                                const std::optional<at::Tensor>& intrinsics) {
  cuda::DeviceGuard guard(joints.device());
  const int64_t B = joints.size(0), T = joints.size(1), J = joints.size(2);
  auto out = at::empty_like(joints, at::MemoryFormat::Contiguous);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "ray_targets_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto in = make_inputs<scalar_t>(joints, keypoints, camera, intrinsics);
    const auto [g, L] = plan<scalar_t, acc_t>(B, T, J, in.per_frame, /*backward=*/false, false);
    cuda::launch(ray_targets_fwd_kernel<scalar_t, acc_t>, g.blocks(), g.threads, L.total, in, g, L,
                 out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_targets_bwd_cuda(
    const at::Tensor& grad, const at::Tensor& joints, const at::Tensor& keypoints, const at::Tensor& camera,
    const std::optional<at::Tensor>& intrinsics, bool need_keypoints, bool need_camera, bool need_intrinsics) {
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "ray_targets_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto in = make_inputs<scalar_t>(joints, keypoints, camera, intrinsics);
    const auto [g, L] = plan<scalar_t, acc_t>(B, T, J, per_frame, /*backward=*/true, cam_grads);
    nchunks = g.nchunks;
    if (cam_grads) cam_part = at::empty({B, T, g.nchunks, kCamGrad}, acc_opts);
    if (g.blocks() == 0) return;
    const scalar_t* G = grad.data_ptr<scalar_t>();
    scalar_t* gX = grad_joints.data_ptr<scalar_t>();
    scalar_t* gK = need_keypoints ? grad_keypoints.data_ptr<scalar_t>() : nullptr;
    if (cam_grads) {
      cuda::launch(ray_targets_bwd_kernel<scalar_t, acc_t, true>, g.blocks(), g.threads, L.total, G, in, g, L, gX,
                   gK, cam_part.data_ptr<acc_t>());
    } else {
      cuda::launch(ray_targets_bwd_kernel<scalar_t, acc_t, false>, g.blocks(), g.threads, L.total, G, in, g, L, gX,
                   gK, static_cast<acc_t*>(nullptr));
    }
  });
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
