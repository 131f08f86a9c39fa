// A view of an n-dimensional array as the core sees it: no Python types, strides in bytes
// (as NumPy gives them; they may be negative or zero).
#pragma once

#include <cstddef>
#include <vector>

#include "kernel_table.hpp"

namespace logitkit {

enum class DType { float32, float64 };

struct StridedArray {
  void* data;
  std::vector<idx> shape;
  std::vector<idx> strides;  // bytes
};

}  // namespace logitkit
