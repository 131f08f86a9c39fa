// Softmax, log-softmax and logsumexp along one axis of a strided n-d array.
//
// The caller (the Python layer) guarantees: x and out are aligned, native-endian arrays of
// `dtype`; `out` has x's shape (softmax, log_softmax) or x's shape without `axis`
// (logsumexp); `axis` is in range; out is either x itself or does not overlap it.
// These functions check the geometry again and throw std::invalid_argument if it is wrong,
// and otherwise never fail. They do not touch Python and may run without the GIL.
#pragma once

#include "strided.hpp"

namespace logitkit {

void softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis);
void log_softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis);
void logsumexp(DType dtype, const StridedArray& x, const StridedArray& out, int axis);

// Elementwise exp with the kernels' own vector exp (for tests of its accuracy); with
// `nonpositive`, the variant the kernels use for arguments <= 0.
void exp(DType dtype, const StridedArray& x, const StridedArray& out, bool nonpositive);

}  // namespace logitkit
