// Planning a computation along one axis of strided arrays: which dimensions are the
// reduced axis, which are independent "batch" positions, and which batch dimension (if any)
// a kernel can take whole, as rows or as contiguous columns.
//
// Operand 0 is always the input with the reduced axis. Other operands either have the same
// axis (an output of the same shape) or lack it (a per-row output such as logsumexp's).
#pragma once

#include <array>
#include <stdexcept>
#include <string>

#include "parallel.hpp"
#include "small_vector.hpp"
#include "strided.hpp"

namespace logitkit {

// 6: cross_entropy with options has logits, loss, gradient, target, mask and sample
// weights; KL divergence with a gradient and a where= mask has 5.
constexpr int kMaxOperands = 6;

// Whether rows of n classes should go to the column kernels, vectorized across rows,
// instead of the row kernels, whose fixed cost per row (horizontal reductions, a padded
// tail) dominates short rows. `lanes` is the target's vector width in elements.
// Measured (8192 rows, float32, ms for softmax): up to 16 classes the column kernels
// always win (n = 10: 0.11 vs 0.60); from 17 to 31 they win unless the rows are whole
// vectors (AVX-512, n = 24: 0.34 vs 0.46; AVX2, n = 24: 0.35 vs 0.17); from 32 on the
// row kernels win (AVX-512, n = 40: 0.48 vs 0.56).
inline bool short_rows(idx n, idx lanes) { return n <= 16 || (n < 32 && n % lanes != 0); }

struct BatchDim {
  idx len;
  std::array<idx, kMaxOperands> stride;  // elements
};

struct AxisPlan {
  int operands = 0;
  idx n = 0;                                  // length of the reduced axis
  std::array<idx, kMaxOperands> axis_stride{};  // elements; 0 for operands without the axis
  SmallVector<BatchDim, kInlineDims> batch;   // batch dimensions longer than 1
  bool empty_batch = false;                   // some batch dimension has length 0
};

inline idx element_stride(idx byte_stride, idx itemsize) {
  if (byte_stride % itemsize != 0)
    throw std::invalid_argument("array stride is not a multiple of its item size");
  return byte_stride / itemsize;
}

// Per-operand lists of plan_axis (at most kMaxOperands entries; braced lists convert).
template <class T>
using OperandList = SmallVector<T, kMaxOperands>;

// `has_axis[k]` says whether operand k has the reduced axis (same shape as operand 0) or
// not (operand 0's shape without the axis); `itemsizes[k]` is its element size in bytes.
inline AxisPlan plan_axis(const OperandList<const StridedArray*>& ops,
                          const OperandList<bool>& has_axis, int axis,
                          const OperandList<idx>& itemsizes) {
  AxisPlan plan;
  plan.operands = static_cast<int>(ops.size());
  const StridedArray& x = *ops[0];
  const int ndim = static_cast<int>(x.shape.size());
  if (axis < 0 || axis >= ndim) throw std::invalid_argument("axis out of range");
  if (static_cast<int>(ops.size()) > kMaxOperands) throw std::invalid_argument("too many operands");
  for (int k = 0; k < plan.operands; ++k) {
    const StridedArray& a = *ops[k];
    const int expected = has_axis[k] ? ndim : ndim - 1;
    if (static_cast<int>(a.shape.size()) != expected || a.strides.size() != a.shape.size())
      throw std::invalid_argument("operand " + std::to_string(k) +
                                  " has the wrong number of dimensions");
    for (int d = 0, e = 0; d < ndim; ++d) {
      if (d == axis && !has_axis[k]) continue;
      if (a.shape[e] != x.shape[d])
        throw std::invalid_argument("operand " + std::to_string(k) + " has the wrong shape");
      ++e;
    }
  }
  plan.n = x.shape[axis];
  for (int k = 0; k < plan.operands; ++k)
    plan.axis_stride[k] =
        has_axis[k] ? element_stride(ops[k]->strides[axis], itemsizes[k]) : 0;
  for (int d = 0; d < ndim; ++d) {
    if (d == axis) continue;
    if (x.shape[d] == 0) plan.empty_batch = true;
    if (x.shape[d] <= 1) continue;
    BatchDim dim{x.shape[d], {}};
    for (int k = 0; k < plan.operands; ++k) {
      const int e = (has_axis[k] || d < axis) ? d : d - 1;
      dim.stride[k] = element_stride(ops[k]->strides[e], itemsizes[k]);
    }
    plan.batch.push_back(dim);
  }
  return plan;
}

// The batch dimension with the largest length among those `fits` accepts, or -1.
template <class Pred>
int pick_batch_dim(const AxisPlan& plan, Pred fits) {
  int best = -1;
  for (int d = 0; d < static_cast<int>(plan.batch.size()); ++d)
    if (fits(plan.batch[d]) && (best < 0 || plan.batch[d].len > plan.batch[best].len)) best = d;
  return best;
}

// Calls f(offsets) for every position of the batch dimensions other than `skip` (-1: none),
// where offsets[k] is operand k's element offset of that position.
template <class F>
void for_each_position(const AxisPlan& plan, int skip, F&& f) {
  SmallVector<const BatchDim*, kInlineDims> dims;
  for (int d = 0; d < static_cast<int>(plan.batch.size()); ++d)
    if (d != skip) dims.push_back(&plan.batch[d]);
  std::array<idx, kMaxOperands> offset{};
  if (dims.size() == 1) {
    // One dimension (per-row values of a 2-d array): a plain loop, not the odometer, with
    // the offsets computed from the index (added up in the array, they went through
    // memory: a store-to-load delay every position).
    const BatchDim& b = *dims[0];
    for (idx i = 0; i < b.len; ++i) {
      std::array<idx, kMaxOperands> at;
      for (int k = 0; k < kMaxOperands; ++k) at[k] = i * b.stride[k];
      f(at);
    }
    return;
  }
  SmallVector<idx, kInlineDims> counter(dims.size(), 0);
  for (;;) {
    f(offset);
    // Odometer: advance the last dimension, carrying into earlier ones.
    int d = static_cast<int>(dims.size()) - 1;
    for (; d >= 0; --d) {
      ++counter[d];
      for (int k = 0; k < plan.operands; ++k) offset[k] += dims[d]->stride[k];
      if (counter[d] < dims[d]->len) break;
      for (int k = 0; k < plan.operands; ++k) offset[k] -= dims[d]->len * dims[d]->stride[k];
      counter[d] = 0;
    }
    if (d < 0) return;
  }
}

// The number of positions of the batch dimensions other than `skip` (-1: none).
inline idx position_count(const AxisPlan& plan, int skip) {
  idx count = 1;
  for (int d = 0; d < static_cast<int>(plan.batch.size()); ++d)
    if (d != skip) count *= plan.batch[d].len;
  return count;
}

// Each operand's element offset of position `index` (C order) of the batch dimensions other
// than `skip`: what for_each_position passes for its index-th call.
inline std::array<idx, kMaxOperands> position_offsets(const AxisPlan& plan, int skip,
                                                      idx index) {
  std::array<idx, kMaxOperands> offset{};
  for (int d = static_cast<int>(plan.batch.size()) - 1; d >= 0; --d) {
    if (d == skip) continue;
    const BatchDim& b = plan.batch[d];
    const idx i = index % b.len;
    index /= b.len;
    for (int k = 0; k < kMaxOperands; ++k) offset[k] += i * b.stride[k];
  }
  return offset;
}

// Runs f(offsets, begin, count) for every position of the batch dimensions other than d,
// and along d (the dimension a kernel takes whole) in pieces of `block` (the last one may
// be shorter), on up to `workers` threads; f must add begin * stride along d itself. With
// d < 0, one call per position, with begin 0 and count 1. `row_elements` is the work per
// unit along d (the row length), for deciding how many threads pay.
//
// The pieces depend on the shapes and `block` only, so each is computed the same way
// whatever the number of workers; f must write only the outputs of its piece.
template <class F>
void for_each_block(const AxisPlan& plan, int d, idx block, idx row_elements, int workers,
                    F&& f) {
  const idx positions = position_count(plan, d);
  const idx len = d < 0 ? 1 : plan.batch[d].len;
  if (block < 1) block = 1;
  const idx pieces = (len + block - 1) / block;
  const idx tasks = positions * pieces;
  if (tasks == 1) {
    f(position_offsets(plan, d, 0), idx(0), len);
    return;
  }
  const int threads = workers_for(positions * len * row_elements, workers);
  parallel_for(tasks, threads, [&](idx t) {
    const idx position = t / pieces;
    const idx begin = (t % pieces) * block;
    f(position_offsets(plan, d, position), begin, len - begin < block ? len - begin : block);
  });
}

}  // namespace logitkit
