// Softmax, log-softmax and logsumexp along one axis of a strided n-d array.
//
// The caller (the Python layer) guarantees: x and out are aligned, native-endian arrays of
// `dtype`; `out` has x's shape (softmax, log_softmax) or x's shape without `axis`
// (logsumexp); `axis` is in range; out is either x itself or does not overlap it.
// These functions check the geometry again and throw std::invalid_argument if it is wrong,
// and otherwise never fail. They do not touch Python and may run without the GIL.
//
// `workers` (>= 1) is the most threads a call may use, the calling one included; the
// results are bit-identical for every value (parallel.hpp).
#pragma once

#include "strided.hpp"

namespace logitkit {

void softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
             int workers = 1);
void log_softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
                 int workers = 1);
void logsumexp(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
               int workers = 1);

// The same with options (temperature=, where=): the function of x * scale (scale = 1 /
// temperature) when `scaled`; `where`, when not null, a uint8 array of x's shape (any
// strides, zero strides allowed: a broadcast mask), 0 = left out (as if -inf; a fully
// masked row gives softmax 0, log_softmax -inf, logsumexp -inf). Every layout goes to the
// row kernels with options, rows not contiguous along the axis gathered one at a time.
struct SoftmaxOptions {
  bool scaled = false;
  double scale = 1.0;
  const StridedArray* where = nullptr;
};

void softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis, int workers,
             const SoftmaxOptions& options);
void log_softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
                 int workers, const SoftmaxOptions& options);
void logsumexp(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
               int workers, const SoftmaxOptions& options);

// Elementwise exp with the kernels' own vector exp (for tests of its accuracy); with
// `nonpositive`, the variant the kernels use for arguments <= 0.
void exp(DType dtype, const StridedArray& x, const StridedArray& out, bool nonpositive);

}  // namespace logitkit
