// Input validation shared by every op. Messages name the argument, what was
// expected and what was given, so a bad call fails at the boundary with a
// message that says how to fix it.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace vmdm {

inline std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// expected: -1 means "any size" for that dimension.
inline void check_shape(const at::Tensor& x, const char* op, const char* name, std::vector<int64_t> expected) {
  bool ok = x.dim() == static_cast<int64_t>(expected.size());
  for (size_t i = 0; ok && i < expected.size(); ++i) ok = expected[i] < 0 || x.size(i) == expected[i];
  if (!ok) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < expected.size(); ++i) {
      os << (i ? ", " : "");
      if (expected[i] < 0) os << "*"; else os << expected[i];
    }
    os << "]";
    TORCH_CHECK_VALUE(false, op, ": ", name, ": expected shape ", os.str(), ", got ", shape_str(x.sizes()));
  }
}

inline void check_like(const at::Tensor& x, const at::Tensor& ref, const char* op, const char* name) {
  TORCH_CHECK_VALUE(x.scalar_type() == ref.scalar_type(), op, ": ", name, ": expected dtype ", ref.scalar_type(),
                    " (the dtype of joints), got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.device() == ref.device(), op, ": ", name, ": expected device ", ref.device(),
                    " (the device of joints), got ", x.device());
}

inline void check_floating(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK_VALUE(at::isFloatingType(x.scalar_type()), op, ": ", name,
                    ": expected a floating-point dtype (float16, bfloat16, float32, float64), got ",
                    x.scalar_type());
}

// Camera [B,3,4] or [B,T,3,4]; returns true when per frame.
inline bool check_camera(const at::Tensor& camera, const at::Tensor& joints, const char* op) {
  const int64_t B = joints.size(0), T = joints.size(1);
  TORCH_CHECK_VALUE(camera.dim() == 3 || camera.dim() == 4, op,
                    ": camera: expected shape [B, 3, 4] or [B, T, 3, 4] with B=", B, ", T=", T, ", got ",
                    shape_str(camera.sizes()));
  if (camera.dim() == 3) check_shape(camera, op, "camera", {B, 3, 4});
  else check_shape(camera, op, "camera", {B, T, 3, 4});
  check_like(camera, joints, op, "camera");
  return camera.dim() == 4;
}

inline void check_intrinsics(const std::optional<at::Tensor>& intrinsics, const at::Tensor& joints, const char* op) {
  if (!intrinsics.has_value()) return;
  check_shape(*intrinsics, op, "intrinsics", {joints.size(0), 4});
  check_like(*intrinsics, joints, op, "intrinsics");
}

inline void check_joints(const at::Tensor& joints, const char* op, int64_t last = 3) {
  check_floating(joints, op, "joints");
  check_shape(joints, op, "joints", {-1, -1, -1, last});
}

}  // namespace vmdm
