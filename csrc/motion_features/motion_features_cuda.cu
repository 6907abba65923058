// CUDA encoder: a block per clip reduces the floor and reads frame 0's root and
// heading; then one thread per feature row runs the same per-row code as the
// CPU kernel (feature_math.h). Rows are independent; the per-joint frames live
// in thread-local memory. Two launches, no host synchronisation.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include "../common/cuda_utils.cuh"
#include "../common/optional_data.h"
#include "motion_features.h"

namespace vmdm {
namespace {

constexpr int kClipThreads = 256;
constexpr int kRowThreads = 128;

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kClipThreads)
    motion_features_clip_kernel(const scalar_t* __restrict__ X, const int64_t* __restrict__ lengths, int64_t T,
                                const FeatureSkeletonView sk, ClipFrame<acc_t>* __restrict__ clips) {
  __shared__ acc_t smin[kClipThreads];
  const int64_t b = blockIdx.x;
  const int J = sk.J;
  int64_t len = lengths[b];
  len = len < 2 ? 2 : (len > T ? T : len);
  const scalar_t* Xb = X + b * T * J * 3;
  acc_t m = static_cast<acc_t>(INFINITY);
  for (int64_t i = threadIdx.x; i < len * J; i += blockDim.x) {
    const acc_t y = static_cast<acc_t>(Xb[3 * i + 1]);
    m = y < m ? y : m;
  }
  smin[threadIdx.x] = m;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s && smin[threadIdx.x + s] < smin[threadIdx.x]) smin[threadIdx.x] = smin[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    ClipFrame<acc_t> cf;
    cf.len = len;
    cf.ox = static_cast<acc_t>(Xb[0]);
    cf.oy = smin[0];
    cf.oz = static_cast<acc_t>(Xb[2]);
    cf.yaw0 = facing_yaw<scalar_t, acc_t>(Xb, sk.facing);
    cf.cos0 = cos(-cf.yaw0);
    cf.sin0 = sin(-cf.yaw0);
    clips[b] = cf;
  }
}

template <typename scalar_t, typename acc_t, int MaxJ>
__global__ void __launch_bounds__(kRowThreads)
    motion_features_row_kernel(const scalar_t* __restrict__ X, int64_t B, int64_t T, const FeatureSkeletonView sk,
                               const ClipFrame<acc_t>* __restrict__ clips, acc_t thr, const scalar_t* __restrict__ M,
                               const scalar_t* __restrict__ S, int64_t D, scalar_t* __restrict__ out) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= B * (T - 1)) return;
  const int64_t b = r / (T - 1), t = r % (T - 1);
  const ClipFrame<acc_t> cf = clips[b];
  scalar_t* o = out + r * D;
  if (t + 1 >= cf.len) {
    encode_padding_row<scalar_t, acc_t>(static_cast<int>(D), M, S, o);
    return;
  }
  const scalar_t* Xt = X + (b * T + t) * sk.J * 3;
  encode_row<scalar_t, acc_t, MaxJ>(Xt, Xt + sk.J * 3, sk, cf, thr, M, S, o);
}

}  // namespace

at::Tensor motion_features_fwd_cuda(const at::Tensor& joints, const at::Tensor& lengths,
                                    const FeatureSkeletonView& sk, double feet_threshold,
                                    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std) {
  cuda::DeviceGuard guard(joints.device());
  const int64_t B = joints.size(0), T = joints.size(1), D = motion_feature_dim(sk.J, sk.nfeet);
  auto out = at::empty({B, T - 1, D}, joints.options());
  if (B == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "motion_features_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto clips = at::empty({B * static_cast<int64_t>(sizeof(ClipFrame<acc_t>))}, joints.options().dtype(at::kByte));
    auto* cf = reinterpret_cast<ClipFrame<acc_t>*>(clips.data_ptr<uint8_t>());
    const auto* X = joints.data_ptr<scalar_t>();
    cuda::launch(motion_features_clip_kernel<scalar_t, acc_t>, B, kClipThreads, 0, X,
                 lengths.data_ptr<int64_t>(), T, sk, cf);
    const int64_t rows = B * (T - 1);
    auto row_kernel = sk.J <= kSmallFeatureJoints ? motion_features_row_kernel<scalar_t, acc_t, kSmallFeatureJoints>
                                                  : motion_features_row_kernel<scalar_t, acc_t, kMaxFeatureJoints>;
    cuda::launch(row_kernel, (rows + kRowThreads - 1) / kRowThreads, kRowThreads, 0,
                 X, B, T, sk, static_cast<const ClipFrame<acc_t>*>(cf), static_cast<acc_t>(feet_threshold),
                 optional_data<scalar_t>(mean),
                 optional_data<scalar_t>(std), D, out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace vmdm
