#include "softmax.hpp"

#include "axis_plan.hpp"
#include "dispatch.hpp"

namespace logitkit {
namespace {

// The batch dimension a column kernel should vectorize across: one contiguous in every
// operand if there is one, else (short rows, or no contiguous direction at all) the
// longest. -1 when there is no batch dimension.
int column_dim(const AxisPlan& plan) {
  const int contiguous = pick_batch_dim(plan, [&](const BatchDim& b) {
    for (int k = 0; k < plan.operands; ++k)
      if (b.stride[k] != 1) return false;
    return true;
  });
  if (contiguous >= 0) return contiguous;
  return pick_batch_dim(plan, [](const BatchDim&) { return true; });
}

// softmax and log_softmax: out has x's shape.
template <class S>
void normalize(const StridedArray& x, const StridedArray& out, int axis,
               idx lanes, void (*rows)(const S*, idx, S*, idx, idx, idx),
               void (*cols)(const S*, idx, idx, S*, idx, idx, idx, idx)) {
  const AxisPlan plan = plan_axis({&x, &out}, {true, true}, axis, {sizeof(S), sizeof(S)});
  if (plan.empty_batch || plan.n == 0) return;
  const S* xp = static_cast<const S*>(x.data);
  S* op = static_cast<S*>(out.data);
  const idx n = plan.n;
  const idx x_axis = plan.axis_stride[0], out_axis = plan.axis_stride[1];

  const bool short_row = short_rows(n, lanes);
  if (x_axis == 1 && out_axis == 1 && (!short_row || plan.batch.empty())) {
    // Contiguous rows: hand the kernel the longest batch dimension as its rows.
    const int d = pick_batch_dim(plan, [](const BatchDim&) { return true; });
    if (d < 0) return rows(xp, 0, op, 0, 1, n);
    const BatchDim& b = plan.batch[d];
    for_each_position(plan, d, [&](const auto& off) {
      rows(xp + off[0], b.stride[0], op + off[1], b.stride[1], b.len, n);
    });
    return;
  }
  const int d = column_dim(plan);
  if (d < 0) return cols(xp, x_axis, 1, op, out_axis, 1, n, 1);
  const BatchDim& b = plan.batch[d];
  for_each_position(plan, d, [&](const auto& off) {
    cols(xp + off[0], x_axis, b.stride[0], op + off[1], out_axis, b.stride[1], n, b.len);
  });
}

template <class S>
void reduce_logsumexp(const StridedArray& x, const StridedArray& out, int axis) {
  // The target is read once per call (here and below): the row/column choice depends on
  // its vector width, and must go with that target's kernels if another thread switches.
  const KernelTable& table = active_kernels();
  const SoftmaxKernels<S>& k = kernels_for<S>(table);
  const AxisPlan plan = plan_axis({&x, &out}, {true, false}, axis, {sizeof(S), sizeof(S)});
  if (plan.empty_batch) return;
  const S* xp = static_cast<const S*>(x.data);
  S* op = static_cast<S*>(out.data);
  const idx n = plan.n;
  const idx x_axis = plan.axis_stride[0];

  const bool short_row = short_rows(n, lanes_for<S>(table));
  if ((x_axis == 1 || n <= 1) && (!short_row || plan.batch.empty())) {
    const int d = pick_batch_dim(plan, [](const BatchDim&) { return true; });
    if (d < 0) return k.logsumexp_rows(xp, 0, op, 0, 1, n);
    const BatchDim& b = plan.batch[d];
    for_each_position(plan, d, [&](const auto& off) {
      k.logsumexp_rows(xp + off[0], b.stride[0], op + off[1], b.stride[1], b.len, n);
    });
    return;
  }
  const int d = column_dim(plan);
  if (d < 0) return k.logsumexp_cols(xp, x_axis, 1, op, 1, n, 1);
  const BatchDim& b = plan.batch[d];
  for_each_position(plan, d, [&](const auto& off) {
    k.logsumexp_cols(xp + off[0], x_axis, b.stride[0], op + off[1], b.stride[1], n, b.len);
  });
}

template <class S>
void softmax_typed(const StridedArray& x, const StridedArray& out, int axis) {
  const KernelTable& table = active_kernels();
  const SoftmaxKernels<S>& k = kernels_for<S>(table);
  normalize<S>(x, out, axis, lanes_for<S>(table), k.softmax_rows, k.softmax_cols);
}

template <class S>
void log_softmax_typed(const StridedArray& x, const StridedArray& out, int axis) {
  const KernelTable& table = active_kernels();
  const SoftmaxKernels<S>& k = kernels_for<S>(table);
  normalize<S>(x, out, axis, lanes_for<S>(table), k.log_softmax_rows, k.log_softmax_cols);
}

template <class S>
void exp_typed(const StridedArray& x, const StridedArray& out, bool nonpositive) {
  if (x.shape.size() != 1 || out.shape != x.shape ||
      x.strides[0] != static_cast<idx>(sizeof(S)) || out.strides[0] != x.strides[0])
    throw std::invalid_argument("exp takes contiguous 1-d arrays of the same length");
  const SoftmaxKernels<S>& k = kernels_for<S>(active_kernels());
  (nonpositive ? k.exp_nonpositive : k.exp)(static_cast<const S*>(x.data),
                                            static_cast<S*>(out.data), x.shape[0]);
}

}  // namespace

void softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis) {
  with_storage_type(dtype, [&](auto s) { softmax_typed<decltype(s)>(x, out, axis); });
}

void log_softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis) {
  with_storage_type(dtype, [&](auto s) { log_softmax_typed<decltype(s)>(x, out, axis); });
}

void logsumexp(DType dtype, const StridedArray& x, const StridedArray& out, int axis) {
  with_storage_type(dtype, [&](auto s) { reduce_logsumexp<decltype(s)>(x, out, axis); });
}

void exp(DType dtype, const StridedArray& x, const StridedArray& out, bool nonpositive) {
  with_storage_type(dtype, [&](auto s) { exp_typed<decltype(s)>(x, out, nonpositive); });
}

}  // namespace logitkit
