// CUDA encoder: a block per clip reduces the floor and reads frame 0's root and
// heading; a thread per frame measures its IK facing; a thread per frame smooths the
// clip's facings into its root rotation; then one thread per feature row runs the
// same per-row code as the CPU kernel (feature_math.h). Four launches, no host
// synchronisation; the per-joint scratch lives in thread-local memory.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "../common/cuda_utils.cuh"
#include "../common/optional_data.h"
#include "motion_features.h"

namespace vmdm {
namespace {

constexpr int kClipThreads = 256;
constexpr int kFrameThreads = 128;
constexpr int kRowThreads = 128;
// Taps (and running sums) of the widest smoothing window kept in shared memory; wider ones read global memory.
constexpr int kSharedTaps = 1024;

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

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kFrameThreads)
    motion_features_facing_kernel(const scalar_t* __restrict__ X, int64_t B, int64_t T, const FeatureSkeletonView sk,
                                  const ClipFrame<acc_t>* __restrict__ clips, acc_t* __restrict__ facing) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= B * T) return;
  const int64_t b = r / T, t = r % T;
  const ClipFrame<acc_t> cf = clips[b];
  if (t < cf.len) ik_facing<scalar_t, acc_t>(X + r * sk.J * 3, sk, cf, facing + 2 * r);
}

template <typename acc_t>
__global__ void __launch_bounds__(kFrameThreads)
    motion_features_root_kernel(int64_t B, int64_t T, const ClipFrame<acc_t>* __restrict__ clips,
                                const acc_t* __restrict__ facing, const acc_t* __restrict__ taps_global, int radius,
                                acc_t* __restrict__ quat) {
  __shared__ acc_t taps_shared[kSharedTaps];
  const int ntaps = 4 * radius + 3;  // taps and their running sums
  const bool shared = ntaps <= kSharedTaps;
  if (shared)
    for (int i = threadIdx.x; i < ntaps; i += blockDim.x) taps_shared[i] = taps_global[i];
  __syncthreads();
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= B * T) return;
  const int64_t b = r / T, t = r % T;
  const int64_t len = clips[b].len;
  const acc_t* taps = shared ? taps_shared : taps_global;
  if (t < len) root_rotation<acc_t>(facing + 2 * b * T, t, len, taps, taps + 2 * radius + 1, radius, quat + 2 * r);
}

template <typename scalar_t, typename acc_t, int MaxJ>
__global__ void __launch_bounds__(kRowThreads)
    motion_features_row_kernel(const scalar_t* __restrict__ X, int64_t B, int64_t T, const FeatureSkeletonView sk,
                               const ClipFrame<acc_t>* __restrict__ clips, const acc_t* __restrict__ quat, acc_t thr,
                               const scalar_t* __restrict__ M, const scalar_t* __restrict__ S, int64_t D,
                               scalar_t* __restrict__ out) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= B * (T - 1)) return;
  const int64_t b = r / (T - 1), t = r % (T - 1);
  const ClipFrame<acc_t> cf = clips[b];
  scalar_t* o = out + r * D;
  if (t + 1 >= cf.len) {
    encode_padding_row<scalar_t, acc_t>(static_cast<int>(D), M, S, o);
    return;
  }
  const int64_t f = b * T + t;
  const scalar_t* Xt = X + f * sk.J * 3;
  encode_row<scalar_t, acc_t, MaxJ>(Xt, Xt + sk.J * 3, quat + 2 * f, quat + 2 * f + 2, sk, cf, thr, M, S, o);
}

}  // namespace

at::Tensor motion_features_fwd_cuda(const at::Tensor& joints, const at::Tensor& lengths,
                                    const FeatureSkeletonView& sk, double feet_threshold, double facing_sigma,
                                    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& std) {
  cuda::DeviceGuard guard(joints.device());
  const int64_t B = joints.size(0), T = joints.size(1), D = motion_feature_dim(sk.J, sk.nfeet);
  auto out = at::empty({B, T - 1, D}, joints.options());
  if (B == 0) return out;
  const int radius = gaussian_radius(facing_sigma);
  // The taps in float64 on the host, as the CPU kernel and the reference compute them.
  std::vector<double> taps(2 * radius + 1, 1.0);
  double total = 0.0;
  for (int k = -radius; k <= radius && radius > 0; ++k)
    taps[k + radius] = std::exp(-0.5 * (k / facing_sigma) * (k / facing_sigma));
  for (double v : taps) total += v;
  for (double& v : taps) v /= total;
  // Then their running sums (see root_rotation): cum[0] = 0, cum[k] = taps[0..k-1].
  const size_t ntaps = taps.size();
  double run = 0.0;
  taps.push_back(0.0);
  for (size_t i = 0; i < ntaps; ++i) taps.push_back(run += taps[i]);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joints.scalar_type(), "motion_features_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_dtype = std::is_same<acc_t, double>::value ? at::kDouble : at::kFloat;
    auto clips = at::empty({B * static_cast<int64_t>(sizeof(ClipFrame<acc_t>))}, joints.options().dtype(at::kByte));
    auto* cf = reinterpret_cast<ClipFrame<acc_t>*>(clips.data_ptr<uint8_t>());
    auto facing = at::empty({B, T, 2}, joints.options().dtype(acc_dtype));
    auto quat = at::empty({B, T, 2}, joints.options().dtype(acc_dtype));
    // A pinned host tensor copied on the current stream: no synchronisation with the host.
    auto taps_host = at::empty({static_cast<int64_t>(taps.size())},
                               at::TensorOptions().dtype(acc_dtype).pinned_memory(true));
    auto* th = taps_host.data_ptr<acc_t>();
    for (size_t i = 0; i < taps.size(); ++i) th[i] = static_cast<acc_t>(taps[i]);
    auto taps_dev = taps_host.to(joints.device(), /*non_blocking=*/true);
    const auto* X = joints.data_ptr<scalar_t>();
    cuda::launch(motion_features_clip_kernel<scalar_t, acc_t>, B, kClipThreads, 0, X,
                 lengths.data_ptr<int64_t>(), T, sk, cf);
    const int64_t frames = B * T;
    const auto frame_blocks = (frames + kFrameThreads - 1) / kFrameThreads;
    cuda::launch(motion_features_facing_kernel<scalar_t, acc_t>, frame_blocks, kFrameThreads, 0, X, B, T, sk,
                 static_cast<const ClipFrame<acc_t>*>(cf), facing.data_ptr<acc_t>());
    cuda::launch(motion_features_root_kernel<acc_t>, frame_blocks, kFrameThreads, 0, B, T,
                 static_cast<const ClipFrame<acc_t>*>(cf), static_cast<const acc_t*>(facing.data_ptr<acc_t>()),
                 static_cast<const acc_t*>(taps_dev.data_ptr<acc_t>()), radius, quat.data_ptr<acc_t>());
    const int64_t rows = B * (T - 1);
    auto row_kernel = sk.J <= kSmallFeatureJoints ? motion_features_row_kernel<scalar_t, acc_t, kSmallFeatureJoints>
                                                  : motion_features_row_kernel<scalar_t, acc_t, kMaxFeatureJoints>;
    cuda::launch(row_kernel, (rows + kRowThreads - 1) / kRowThreads, kRowThreads, 0,
                 X, B, T, sk, static_cast<const ClipFrame<acc_t>*>(cf), static_cast<const acc_t*>(quat.data_ptr<acc_t>()),
                 static_cast<acc_t>(feet_threshold), optional_data<scalar_t>(mean),
                 optional_data<scalar_t>(std), D, out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace vmdm
