// A view of an n-dimensional array as the core sees it: no Python types, strides in bytes
// (as NumPy gives them; they may be negative or zero).
#pragma once

#include <cstddef>

#include "kernel_table.hpp"
#include "small_vector.hpp"

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

// Dimensions kept inside StridedArray (more go to the heap): NumPy arrays rarely have more.
constexpr std::size_t kInlineDims = 8;
using Dims = SmallVector<idx, kInlineDims>;

struct StridedArray {
  void* data;
  Dims shape;
  Dims strides;  // bytes
};

}  // namespace logitkit
