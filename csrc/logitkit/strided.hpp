// A view of an n-dimensional array as the core sees it: no Python types, strides in bytes
// (as NumPy gives them; they may be negative or zero).
#pragma once

#include <cstddef>
#include <vector>

#include "kernel_table.hpp"

namespace logitkit {

enum class DType { float32, float64, float16, bfloat16 };

// Calls f(S{}) with S the storage type of `dtype` (float, double, Float16, BFloat16).
template <class F>
decltype(auto) with_storage_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::float32:
      return f(float{});
    case DType::float64:
      return f(double{});
    case DType::float16:
      return f(Float16{});
    default:
      return f(BFloat16{});
  }
}

struct StridedArray {
  void* data;
  std::vector<idx> shape;
  std::vector<idx> strides;  // bytes
};

}  // namespace logitkit
