// CUDA kernels for recover_from_ric. The running sums over time (heading, root
// path; backward, their suffix sums) are one thread per clip over a [B, T, 3]
// float32/64 scratch; placing the joints (backward: rotating their gradients
// back and reducing them per frame) is one thread per (clip, frame). The per-row
// and per-clip code is ric_math.h, shared with the CPU kernels. Forward is
// two launches, backward three, no host synchronisation.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>

#include "../common/cuda_utils.cuh"
#include "../common/ric_math.h"
#include "../common/optional_data.h"
#include "recover_from_ric.h"

namespace vmdm {
namespace {

constexpr int kThreads = 128;

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    ric_scan_kernel(const scalar_t* __restrict__ F, int64_t B, int64_t T, int64_t D, const scalar_t* __restrict__ M,
                    const scalar_t* __restrict__ S, acc_t* __restrict__ path) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b < B) ric_scan<scalar_t, acc_t>(F + b * T * D, T, D, M, S, path + b * T * 3);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    ric_row_kernel(const scalar_t* __restrict__ F, int64_t rows, int64_t D, int J, const scalar_t* __restrict__ M,
                   const scalar_t* __restrict__ S, const acc_t* __restrict__ path, scalar_t* __restrict__ X) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < rows) ric_row<scalar_t, acc_t>(F + r * D, J, M, S, path + 3 * r, X + r * J * 3);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    ric_row_bwd_kernel(const scalar_t* __restrict__ G, const scalar_t* __restrict__ F, int64_t rows, int64_t D, int J,
                       const scalar_t* __restrict__ M, const scalar_t* __restrict__ S, const acc_t* __restrict__ path,
                       scalar_t* __restrict__ GF, acc_t* __restrict__ acc) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < rows) ric_row_backward<scalar_t, acc_t>(G + r * J * 3, F + r * D, J, M, S, path + 3 * r, GF + r * D, acc + 3 * r);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    ric_scan_bwd_kernel(const scalar_t* __restrict__ F, int64_t B, int64_t T, int64_t D, const scalar_t* __restrict__ M,
                        const scalar_t* __restrict__ S, const acc_t* __restrict__ path, const acc_t* __restrict__ acc,
                        scalar_t* __restrict__ GF) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  ric_scan_backward<scalar_t, acc_t>(F + b * T * D, T, D, M, S, path + b * T * 3, acc + b * T * 3, GF + b * T * D);
}

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

}  // namespace

at::Tensor recover_from_ric_fwd_cuda(const at::Tensor& features, int64_t J, const std::optional<at::Tensor>& mean,
                                     const std::optional<at::Tensor>& std) {
  cuda::DeviceGuard guard(features.device());
  const int64_t B = features.size(0), T = features.size(1), D = features.size(2);
  auto out = at::empty({B, T, J, 3}, features.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "recover_from_ric_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto path = at::empty({B, T, 3}, features.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    const auto* F = features.data_ptr<scalar_t>();
    const scalar_t* M = optional_data<scalar_t>(mean);
    const scalar_t* S = optional_data<scalar_t>(std);
    cuda::launch(ric_scan_kernel<scalar_t, acc_t>, blocks_for(B), kThreads, 0, F, B, T, D, M, S,
                 path.data_ptr<acc_t>());
    cuda::launch(ric_row_kernel<scalar_t, acc_t>, blocks_for(B * T), kThreads, 0, F, B * T, D, static_cast<int>(J), M,
                 S, static_cast<const acc_t*>(path.data_ptr<acc_t>()), out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor recover_from_ric_bwd_cuda(const at::Tensor& grad, const at::Tensor& features, int64_t J,
                                     const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std) {
  cuda::DeviceGuard guard(features.device());
  const int64_t B = features.size(0), T = features.size(1), D = features.size(2);
  auto gfeat = at::zeros_like(features);
  if (features.numel() == 0) return gfeat;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "recover_from_ric_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto opts = features.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
    auto path = at::empty({B, T, 3}, opts), acc = at::empty({B, T, 3}, opts);
    const auto* F = features.data_ptr<scalar_t>();
    const scalar_t* M = optional_data<scalar_t>(mean);
    const scalar_t* S = optional_data<scalar_t>(std);
    // The rows need the heading of their frame: scan first (the backward scan reuses it).
    cuda::launch(ric_scan_kernel<scalar_t, acc_t>, blocks_for(B), kThreads, 0, F, B, T, D, M, S,
                 path.data_ptr<acc_t>());
    cuda::launch(ric_row_bwd_kernel<scalar_t, acc_t>, blocks_for(B * T), kThreads, 0, grad.data_ptr<scalar_t>(), F,
                 B * T, D, static_cast<int>(J), M, S, static_cast<const acc_t*>(path.data_ptr<acc_t>()),
                 gfeat.data_ptr<scalar_t>(), acc.data_ptr<acc_t>());
    cuda::launch(ric_scan_bwd_kernel<scalar_t, acc_t>, blocks_for(B), kThreads, 0, F, B, T, D, M, S,
                 static_cast<const acc_t*>(path.data_ptr<acc_t>()), static_cast<const acc_t*>(acc.data_ptr<acc_t>()), gfeat.data_ptr<scalar_t>());
  });
  return gfeat;
}

}  // namespace vmdm
