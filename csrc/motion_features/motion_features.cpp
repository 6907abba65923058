#include "motion_features.h"

#include "../common/checks.h"

namespace vmdm {
namespace {

FeatureSkeletonView make_view(const char* op, int64_t J, at::IntArrayRef bone_child, at::IntArrayRef bone_parent,
                              at::IntArrayRef bone_frame, at::ArrayRef<double> rest, at::IntArrayRef facing,
                              at::IntArrayRef feet) {
  TORCH_CHECK_VALUE(J >= 2 && J <= kMaxFeatureJoints, op, ": joints: expected 2..", kMaxFeatureJoints,
                    " joints, got ", J);
  TORCH_CHECK_VALUE(static_cast<int64_t>(bone_child.size()) == J - 1 &&
                        static_cast<int64_t>(bone_parent.size()) == J - 1,
                    op, ": bone_child / bone_parent: expected ", J - 1, " bones each, got ", bone_child.size(), " / ",
                    bone_parent.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(bone_frame.size()) == J - 1, op, ": bone_frame: expected ", J - 1,
                    " entries, got ", bone_frame.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(rest.size()) == 3 * J, op, ": rest: expected ", 3 * J, " values, got ",
                    rest.size());
  TORCH_CHECK_VALUE(facing.size() == 4, op, ": facing: expected 4 joints, got ", facing.size());
  TORCH_CHECK_VALUE(static_cast<int>(feet.size()) <= kMaxFeet, op, ": feet: expected at most ", kMaxFeet,
                    " joints, got ", feet.size());
  FeatureSkeletonView sk{};
  sk.J = static_cast<int>(J);
  sk.nfeet = static_cast<int>(feet.size());
  auto joint = [&](int64_t j, const char* what) {
    TORCH_CHECK_VALUE(j >= 0 && j < J, op, ": ", what, ": joint ", j, " is outside [0, ", J, ")");
    return static_cast<int>(j);
  };
  for (int i = 0; i < 4; ++i) sk.facing[i] = joint(facing[i], "facing");
  for (int i = 0; i < sk.nfeet; ++i) sk.feet[i] = joint(feet[i], "feet");
  // Parent-first order: each bone's parent is the root or a joint an earlier bone reached.
  bool reached[kMaxFeatureJoints] = {true};
  for (int64_t k = 0; k < J - 1; ++k) {
    const int c = joint(bone_child[k], "bone_child"), p = joint(bone_parent[k], "bone_parent");
    TORCH_CHECK_VALUE(reached[p] && !reached[c] && c != 0, op, ": bone ", k, " (", p, " -> ", c,
                      "): bones must list joints 1..J-1 once each, every parent before its children");
    const int64_t f = bone_frame[k];
    TORCH_CHECK_VALUE(f == -1 || (f > 0 && f < J && reached[f]), op, ": bone_frame[", k, "] = ", f,
                      ": expected -1 (the root rotation) or a joint an earlier bone reached");
    reached[c] = true;
    sk.child[k] = c;
    sk.parent[k] = p;
    sk.frame[k] = static_cast<int>(f);
  }
  for (int64_t i = 0; i < 3 * J; ++i) sk.rest[i] = rest[i];
  return sk;
}

}  // namespace

at::Tensor motion_features_fwd(const at::Tensor& joints, const at::Tensor& lengths, at::IntArrayRef bone_child,
                               at::IntArrayRef bone_parent, at::IntArrayRef bone_frame, at::ArrayRef<double> rest,
                               at::IntArrayRef facing, at::IntArrayRef feet, double feet_threshold,
                               double facing_sigma, const std::optional<at::Tensor>& mean,
                               const std::optional<at::Tensor>& std) {
  const char* op = "motion_features_fwd";
  TORCH_CHECK_VALUE(joints.dim() == 4 && joints.size(3) == 3 && joints.size(1) >= 2, op,
                    ": joints: expected shape [B, T >= 2, J, 3], got ", shape_str(joints.sizes()));
  check_floating(joints, op, "joints");
  const int64_t B = joints.size(0), J = joints.size(2);
  const FeatureSkeletonView sk = make_view(op, J, bone_child, bone_parent, bone_frame, rest, facing, feet);
  TORCH_CHECK_VALUE(facing_sigma >= 0 && facing_sigma <= kMaxFacingSigma, op, ": facing_sigma: expected 0..",
                    kMaxFacingSigma, " frames, got ", facing_sigma);
  check_shape(lengths, op, "lengths", {B});
  TORCH_CHECK_VALUE(!at::isFloatingType(lengths.scalar_type()) && lengths.scalar_type() != at::kBool, op,
                    ": lengths: expected an integer dtype, got ", lengths.scalar_type());
  TORCH_CHECK_VALUE(mean.has_value() == std.has_value(), op, ": mean and std: give both or neither");
  const int64_t D = motion_feature_dim(J, sk.nfeet);
  std::optional<at::Tensor> m, s;
  if (mean.has_value()) {
    check_shape(*mean, op, "mean", {D});
    check_shape(*std, op, "std", {D});
    check_like(*mean, joints, op, "mean");
    check_like(*std, joints, op, "std");
    m = mean->contiguous();
    s = std->contiguous();
  }
  auto len = lengths.to(joints.device(), at::kLong).contiguous();
  if (joints.is_cuda()) {
#ifdef WITH_CUDA
    return motion_features_fwd_cuda(joints.contiguous(), len, sk, feet_threshold, facing_sigma, m, s);
#else
    TORCH_CHECK(false, op, ": joints are on ", joints.device(), " but the vmdm_kernels extension was built without CUDA");
#endif
  }
  TORCH_CHECK(joints.is_cpu(), op, ": unsupported device ", joints.device());
  return motion_features_fwd_cpu(joints.contiguous(), len, sk, feet_threshold, facing_sigma, m, s);
}

}  // namespace vmdm
