// Softmax states of blocks of a row: the pieces the Dask layer (python/logitkit/_dask.py)
// needs when a row's classes are split between chunks, possibly on different machines.
//
// A block's state, per row, is (m, s): the block's maximum and the sum of exp(x - m) over
// the block minus 1, in double (the 1 of the maximum kept apart, so that no small term is
// rounded against it). States merge associatively (merge_row_states), in any tree whose
// shape depends on the chunks only, and the merged state of a whole row gives
// logsumexp = m + log1p(s) and, in a second pass over each block, softmax = exp(x - m) /
// (1 + s) and log_softmax = (x - m) - log1p(s) (rows_from_state).
//
// Non-finite rows follow the whole-row kernels: a state of a block with a NaN is (NaN,
// NaN); with +inf and no NaN (+inf, 0); of -inf only, or no classes at all, (-inf, 0).
// Merging keeps NaN over +inf over finite over -inf. rows_from_state writes NaN across a
// row whose merged m is not finite (the kernels' softmax of such a row), and logsumexp is
// then m itself.
//
// x and out are rows x n with contiguous rows, any distance apart (a block of columns of a
// larger array is used in place); states are C-contiguous rows x `fields` doubles (m and s
// are fields 0 and 1; other fields are the caller's and are not touched). The caller (the
// Python layer) guarantees the shapes; these functions throw std::invalid_argument if they
// are wrong. `workers` as elsewhere: results are bit-identical for every value.
#pragma once

#include "strided.hpp"

namespace logitkit {

// Options (temperature=, where=): exponents (x - m) * scale (scale = 1 / temperature), and
// a mask, a uint8 rows x n array with contiguous rows like x: elements whose byte is 0 are
// left out of m and s, and get softmax 0 and log_softmax -inf. m stays the maximum of x
// itself, so merges need the same scale.
struct StateOptions {
  bool scaled = false;
  double scale = 1.0;
  const StridedArray* mask = nullptr;
};

// state[r] = (m, s) of row r of x.
void row_states(DType dtype, const StridedArray& x, const StridedArray& state, int workers,
                const StateOptions& options = StateOptions());

// out[r] = the merge of states[r, 0], ..., states[r, k - 1], in that order.
// states: rows x k x fields, out: rows x fields.
void merge_row_states(const StridedArray& states, const StridedArray& out, double scale = 1.0);

// out = exp((x - m) * scale) * row_scale[r] / (1 + s), or with `log`
// (x - m) * scale - log1p(s), from each row's merged state; row_scale may be null (1). A row
// whose scale is 0 is all 0, even if its state is not finite (a gradient row that does not
// count).
void rows_from_state(DType dtype, const StridedArray& x, const StridedArray& state,
                     const double* row_scale, const StridedArray& out, bool log, int workers,
                     const StateOptions& options = StateOptions());

}  // namespace logitkit
