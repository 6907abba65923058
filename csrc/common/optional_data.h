// Raw pointer to an optional tensor's data, or nullptr when it is absent: kernels take
// optional operands (intrinsics, normalisation statistics) as nullable pointers.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace vmdm {

template <typename scalar_t>
inline const scalar_t* optional_data(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<scalar_t>() : nullptr;
}

}  // namespace vmdm
