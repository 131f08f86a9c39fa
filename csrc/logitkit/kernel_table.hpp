// The table of kernels one SIMD target provides. Each target's translation unit
// (kernels_target.cpp, compiled once per target with its own -m flags) fills one table;
// dispatch.cpp picks a table at import from the CPU's features.
//
// Kernels take element pointers and element strides, work on a range of rows (or columns),
// and keep no state, so callers can split the rows between threads later.
#pragma once

#include <cstddef>

namespace logitkit {

using idx = std::ptrdiff_t;

template <class T>
struct SoftmaxKernels {
  // rows x n, reduced axis contiguous; rows start *_row_stride elements apart.
  void (*softmax_rows)(const T* x, idx x_row_stride, T* out, idx out_row_stride, idx rows,
                       idx n);
  void (*log_softmax_rows)(const T* x, idx x_row_stride, T* out, idx out_row_stride,
                           idx rows, idx n);
  void (*logsumexp_rows)(const T* x, idx x_row_stride, T* out, idx out_stride, idx rows,
                         idx n);
  // n x cols: the reduced axis is strided (*_axis_stride elements between classes) and the
  // kernel vectorizes across `cols` positions, *_col_stride elements apart (1: contiguous
  // columns; the row length: short contiguous rows, vectorized across rows).
  void (*softmax_cols)(const T* x, idx x_axis_stride, idx x_col_stride, T* out,
                       idx out_axis_stride, idx out_col_stride, idx n, idx cols);
  void (*log_softmax_cols)(const T* x, idx x_axis_stride, idx x_col_stride, T* out,
                           idx out_axis_stride, idx out_col_stride, idx n, idx cols);
  void (*logsumexp_cols)(const T* x, idx x_axis_stride, idx x_col_stride, T* out,
                         idx out_col_stride, idx n, idx cols);
  // The vector exps themselves, elementwise over contiguous arrays (for accuracy tests):
  // full range, and the faster one for arguments <= 0 that the kernels use.
  void (*exp)(const T* x, T* out, idx n);
  void (*exp_nonpositive)(const T* x, T* out, idx n);
};

struct KernelTable {
  const char* name;
  SoftmaxKernels<float> f32;
  SoftmaxKernels<double> f64;
};

template <class T>
const SoftmaxKernels<T>& kernels_for(const KernelTable& table);

template <>
inline const SoftmaxKernels<float>& kernels_for<float>(const KernelTable& table) {
  return table.f32;
}
template <>
inline const SoftmaxKernels<double>& kernels_for<double>(const KernelTable& table) {
  return table.f64;
}

}  // namespace logitkit
