// Building blocks shared by the CUDA kernels: frame tiles with halos, staged
// (coalesced) loads and stores through shared memory, deterministic block
// reductions, camera staging and the launch/stream/device helpers.
//
// Every fused kernel works on tiles: a block owns one sample b, a run of TT
// consecutive "central" frames [t0, t1) and a chunk of JC joints (all joints
// unless J is large). It stages the central frames plus halo frames (one
// before and/or one after, when they exist) into shared memory with flat,
// fully coalesced loads, so every input element is read from global memory
// once per pass (halo rows are re-read by the neighbouring tile, 1/TT extra).
//
// Host/device glue (stream, guard, launch, dynamic shared memory) goes through
// the small wrappers at the end of this file; a host-only build may provide
// them itself (see VMDM_CUDA_EMULATE), which is how the kernels' index
// logic can be exercised on a machine without a GPU.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <ATen/OpMathType.h>

#include "camera_math.h"

#if defined(__CUDACC__)
// Only c10's CUDA headers: ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers that a bare toolkit lacks.
#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <atomic>
#include <utility>
#define VMDM_DEVICE __device__ __forceinline__
#elif !defined(VMDM_CUDA_EMULATE)
#error "cuda_utils.cuh is meant for nvcc (or a host emulation that defines VMDM_CUDA_EMULATE)"
#endif

namespace vmdm {
namespace cuda {

constexpr int kMaxThreads = 256;        // threads per block (a multiple of 32)
constexpr int kMaxTilePoints = 512;     // points (frames x joints, halos included) per block
constexpr int kPointsPerThread = (kMaxTilePoints + kMaxThreads - 1) / kMaxThreads;  // staged points per thread, at most
constexpr size_t kSmemBudget = 40 << 10;  // dynamic shared memory per block, under the 48 KiB default
constexpr int kCamGrad = 16;            // per-row camera gradient: [R|t] (12) then (fx, fy, cx, cy) (4)
constexpr int kCamGradStride = 17;      // padded row stride of per-point camera contributions (no bank conflicts)

// How a [B, T, J, *] problem is cut into blocks. Plain data, passed by value to kernels.
struct Tiling {
  int64_t B;
  int T, J;
  int TT, JC;              // central frames per tile, joints per chunk
  int ntiles, nchunks;     // per sample: ceil(T / TT), ceil(J / JC)
  int halo_lo, halo_hi;    // frames staged before / after the central ones (0 or 1)
  int max_rows, max_pts;   // upper bounds over all tiles (shared-memory sizing)
  int threads;             // block size
  VMDM_HD int parts() const { return ntiles * nchunks; }  // blocks per sample
  VMDM_HD int64_t blocks() const { return B * static_cast<int64_t>(parts()); }
};

// One block's share of the problem.
struct Tile {
  int64_t b;
  int part;      // index of the block within its sample: tile * nchunks + chunk
  int t0, t1;    // central frames [t0, t1)
  int lo;        // first staged frame (t0 - halo_lo when that frame exists)
  int nrows;     // staged frames
  int c_off;     // t0 - lo: staged row of frame t0
  int j0, jn;    // joints [j0, j0 + jn)
  int npts;      // staged points: nrows * jn
  int ncentral;  // central points: (t1 - t0) * jn
  int chunk;
};

template <typename T>
VMDM_HD T imin(T a, T b) { return a < b ? a : b; }

VMDM_HD Tile tile_of(const Tiling& g, int64_t blk) {
  Tile tl;
  tl.chunk = static_cast<int>(blk % g.nchunks);
  const int64_t rest = blk / g.nchunks;
  const int tile = static_cast<int>(rest % g.ntiles);
  tl.b = rest / g.ntiles;
  tl.part = tile * g.nchunks + tl.chunk;
  tl.t0 = tile * g.TT;
  tl.t1 = imin(g.T, tl.t0 + g.TT);
  tl.lo = tl.t0 > 0 ? tl.t0 - g.halo_lo : tl.t0;
  const int hi = tl.t1 < g.T ? tl.t1 + g.halo_hi : tl.t1;
  tl.nrows = hi - tl.lo;
  tl.c_off = tl.t0 - tl.lo;
  tl.j0 = tl.chunk * g.JC;
  tl.jn = imin(g.JC, g.J - tl.j0);
  tl.npts = tl.nrows * tl.jn;
  tl.ncentral = (tl.t1 - tl.t0) * tl.jn;
  return tl;
}

// Host: choose the tiling. bytes_per_point / bytes_per_row: shared memory that
// scales with staged points / staged rows; bytes_fixed: the rest. Tiles are as
// long as shared memory and kMaxTilePoints allow (short halos relative to the
// tile), then shortened while the grid would leave most SMs idle.
inline Tiling make_tiling(int64_t B, int64_t T, int64_t J, int halo_lo, int halo_hi, size_t bytes_per_point,
                          size_t bytes_per_row, size_t bytes_fixed, int num_sms) {
  Tiling g{};
  g.B = B;
  g.T = static_cast<int>(T);
  g.J = static_cast<int>(J);
  g.halo_lo = halo_lo;
  g.halo_hi = halo_hi;
  if (B <= 0 || T <= 0 || J <= 0) {  // nothing to launch; parts() == 0 unless T and J are both positive
    g.TT = g.JC = 1;
    g.ntiles = T > 0 ? static_cast<int>(T) : 0;
    g.nchunks = J > 0 ? static_cast<int>(J) : 0;
    g.threads = 32;
    return g;
  }
  const int halo = halo_lo + halo_hi;
  const size_t avail = kSmemBudget > bytes_fixed ? kSmemBudget - bytes_fixed : 0;
  // Joints per chunk: at least 1 + halo rows of JC points must fit.
  int64_t jc = std::min<int64_t>(J, kMaxTilePoints / (1 + halo));
  const int64_t jc_smem = static_cast<int64_t>((avail / (1 + halo) - std::min(avail / (1 + halo), bytes_per_row)) /
                                               std::max<size_t>(bytes_per_point, 1));
  jc = std::max<int64_t>(1, std::min(jc, jc_smem));
  int64_t rows = std::min<int64_t>(kMaxTilePoints / jc, static_cast<int64_t>(avail / (jc * bytes_per_point + bytes_per_row)));
  int64_t tt = std::max<int64_t>(1, rows - halo);
  tt = std::min(tt, T);
  const int64_t nchunks = (J + jc - 1) / jc;
  const int64_t want_blocks = 2 * static_cast<int64_t>(std::max(num_sms, 1));
  while (tt > 8 && B * nchunks * ((T + tt - 1) / tt) < want_blocks) tt = (tt + 1) / 2;
  g.TT = static_cast<int>(tt);
  g.JC = static_cast<int>(jc);
  g.ntiles = static_cast<int>((T + tt - 1) / tt);
  g.nchunks = static_cast<int>(nchunks);
  g.max_rows = static_cast<int>(std::min<int64_t>(T, tt + halo));
  g.max_pts = g.max_rows * g.JC;
  g.threads = static_cast<int>(std::min<int64_t>(kMaxThreads, (g.max_pts + 31) / 32 * 32));
  // fetch_tile keeps each thread's share of a tile in registers.
  TORCH_CHECK(g.max_pts <= kPointsPerThread * g.threads, "vmdm: tile of ", g.max_pts, " points for ", g.threads,
              " threads");
  return g;
}

// Host: carves the dynamic shared memory of a block into 16-byte aligned arrays.
struct SmemCarver {
  size_t size = 0;
  template <typename T>
  size_t take(int64_t n) {
    size = (size + 15) & ~static_cast<size_t>(15);
    const size_t off = size;
    size += static_cast<size_t>(std::max<int64_t>(n, 0)) * sizeof(T);
    return off;
  }
};

template <typename T>
VMDM_HD T* smem_at(unsigned char* base, size_t off) {
  return reinterpret_cast<T*>(base + off);
}

#if defined(__CUDACC__) || defined(VMDM_CUDA_EMULATE)

// Staging a tile is split in two so that a kernel can issue the global loads of all
// its inputs before the first shared-memory store (one memory round trip per block):
// fetch_tile reads the tile's rows [lo, lo + nrows) x joints [j0, j0 + jn) x C channels
// of a contiguous [B, T, J, C] tensor into registers (element e of the flat staged
// layout goes to v[k] of thread e % blockDim.x, k = e / blockDim.x), coalesced;
// put_tile writes them to shared memory. Needs npts <= kPointsPerThread * blockDim.x
// (make_tiling guarantees it).
template <int C, typename T>
VMDM_DEVICE void fetch_tile(const T* __restrict__ src, T (&v)[C * kPointsPerThread], const Tiling& g,
                            const Tile& tl) {
  const int n = tl.npts * C;
  const int64_t base = ((tl.b * g.T + tl.lo) * g.J + tl.j0) * C;
  const bool whole_rows = tl.jn == g.J;  // one contiguous range
  const int row_len = tl.jn * C;
  const int64_t row_stride = static_cast<int64_t>(g.J) * C;
#pragma unroll
  for (int k = 0; k < C * kPointsPerThread; ++k) {
    const int e = threadIdx.x + k * blockDim.x;
    if (e < n) {
      int64_t o = e;
      if (!whole_rows) {
        const int r = e / row_len;
        o = r * row_stride + (e - r * row_len);
      }
      v[k] = src[base + o];
    }
  }
}

template <int C, typename T>
VMDM_DEVICE void put_tile(T* __restrict__ dst, const T (&v)[C * kPointsPerThread], const Tile& tl) {
  const int n = tl.npts * C;
#pragma unroll
  for (int k = 0; k < C * kPointsPerThread; ++k) {
    const int e = threadIdx.x + k * blockDim.x;
    if (e < n) dst[e] = v[k];
  }
}

// The inverse of fetch_tile + put_tile for the central rows. central: the tile's central points,
// C values each, in staged order (point k of the central rows at central[C * k]).
template <int C, typename T>
VMDM_DEVICE void store_central(T* __restrict__ dst, const T* __restrict__ central, const Tiling& g, const Tile& tl) {
  const int n = tl.ncentral * C;
  const int64_t base = ((tl.b * g.T + tl.t0) * g.J + tl.j0) * C;
  if (tl.jn == g.J) {
#pragma unroll 4
    for (int e = threadIdx.x; e < n; e += blockDim.x) dst[base + e] = central[e];
  } else {
    const int row_len = tl.jn * C;
    const int64_t row_stride = static_cast<int64_t>(g.J) * C;
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
      const int r = e / row_len;
      dst[base + r * row_stride + (e - r * row_len)] = central[e];
    }
  }
}

// Same as store_central, negated (grad_target = -grad_joints).
template <int C, typename T>
VMDM_DEVICE void store_central_neg(T* __restrict__ dst, const T* __restrict__ central, const Tiling& g,
                                   const Tile& tl) {
  using acc_t = at::opmath_type<T>;
  const int n = tl.ncentral * C;
  const int64_t base = ((tl.b * g.T + tl.t0) * g.J + tl.j0) * C;
  const int row_len = tl.jn * C;
  const int64_t row_stride = static_cast<int64_t>(g.J) * C;
  const bool whole_rows = tl.jn == g.J;
#pragma unroll 4
  for (int e = threadIdx.x; e < n; e += blockDim.x) {
    int64_t o = e;
    if (!whole_rows) {
      const int r = e / row_len;
      o = r * row_stride + (e - r * row_len);
    }
    dst[base + o] = static_cast<T>(-static_cast<acc_t>(central[e]));
  }
}

// Cameras of the staged rows (one per row, or the clip's single camera) in the
// accumulation type, converted once per block.
template <typename scalar_t, typename acc_t>
VMDM_DEVICE void load_tile_cameras(const scalar_t* __restrict__ cam, const scalar_t* __restrict__ intr,
                                   bool per_frame, const Tiling& g, const Tile& tl, Camera<acc_t>* dst) {
  const int ncam = per_frame ? tl.nrows : 1;
  for (int r = threadIdx.x; r < ncam; r += blockDim.x) {
    const int64_t ci = per_frame ? tl.b * g.T + tl.lo + r : tl.b;
    load_camera<scalar_t, acc_t>(cam + ci * 12, intr != nullptr ? intr + tl.b * 4 : nullptr, dst[r]);
  }
}

// Deterministic sum of N values over the block (fixed shuffle tree, then the
// per-warp results in warp order); the result is valid in thread 0. Every
// thread of the block must call it. scratch: 32 * N values of shared memory.
template <int N, typename acc_t>
VMDM_DEVICE void block_sum(acc_t (&v)[N], acc_t* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int k = 0; k < N; ++k)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
  if (nwarps == 1) return;
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < N; ++k) scratch[warp * N + k] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < N; ++k) {
      v[k] = lane < nwarps ? scratch[lane * N + k] : acc_t(0);
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
    }
  }
}

// Per-row sums of per-point camera contributions (contrib: [ncentral][kCamGradStride],
// central points in staged order), summed over the row's joints in joint order, into
// cam_part[B, T, nchunks, kCamGrad].
template <typename acc_t>
VMDM_DEVICE void store_camera_rows(const acc_t* contrib, acc_t* __restrict__ cam_part, const Tiling& g,
                                   const Tile& tl) {
  const int n = (tl.t1 - tl.t0) * kCamGrad;
  for (int e = threadIdx.x; e < n; e += blockDim.x) {
    const int r = e / kCamGrad, k = e - r * kCamGrad;
    const acc_t* c = contrib + r * tl.jn * kCamGradStride + k;
    acc_t s = acc_t(0);
    for (int j = 0; j < tl.jn; ++j) s += c[j * kCamGradStride];
    cam_part[((tl.b * g.T + tl.t0 + r) * g.nchunks + tl.chunk) * kCamGrad + k] = s;
  }
}

#endif  // __CUDACC__ || VMDM_CUDA_EMULATE

#if defined(__CUDACC__)

VMDM_DEVICE unsigned char* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char vmdm_dynamic_smem[];
  return vmdm_dynamic_smem;
}

// The current stream of the current device (what at::cuda::getCurrentCUDAStream() returns).
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// SMs of the current device, queried once per device.
inline int num_sms() {
  static std::atomic<int> cache[64] = {};
  const int dev = c10::cuda::current_device();
  if (dev < 0 || dev >= 64) return 132;
  int n = cache[dev].load(std::memory_order_relaxed);
  if (n == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    cache[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}

// The SM count tiles are planned for. Tile lengths (and so how partial sums are grouped)
// follow the SM count; under torch.use_deterministic_algorithms a fixed count (an H100's)
// makes results bit-identical across GPU models and MIG slices too.
inline int tiling_sms() {
  return at::globalContext().deterministicAlgorithms() ? 132 : num_sms();
}

using DeviceGuard = c10::cuda::CUDAGuard;

// Launch on the current stream; checks the launch.
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), int64_t blocks, int threads, size_t smem, Args&&... args) {
  TORCH_CHECK(blocks <= 0x7fffffff, "vmdm: grid of ", blocks, " blocks is too large");
  if (blocks <= 0) return;
  kernel<<<static_cast<unsigned int>(blocks), threads, smem, current_stream()>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace vmdm
