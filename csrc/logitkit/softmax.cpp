#include "softmax.hpp"

#include <cmath>
#include <vector>

#include "axis_plan.hpp"
#include "dispatch.hpp"
#include "row_driver.hpp"
#include "parallel.hpp"
#include "storage.hpp"

namespace logitkit {
namespace {

// Rows of at least kLongRow elements are cut into pieces of kRowPiece, whose (max, sum of
// exponentials) are computed in parallel and merged in piece order: one row of 2^24 (or 16
// of 2^20) would otherwise keep one thread busy. Fixed sizes, so a row is cut the same way
// whatever the number of workers. 2^18 keeps LLM vocabularies (up to 256K classes) on the
// row kernels, which have rows enough to share; a piece of 2^16 float32 (256 KiB) is read
// twice from L2.
constexpr idx kLongRow = idx(1) << 18;
constexpr idx kRowPiece = idx(1) << 16;

// The blocks of columns for a column kernel: a task's worth of them, in multiples that keep
// its vectors full; contiguous columns in multiples of 256, so that each of the block's
// rows is a long run for the prefetcher (see the column kernels).
idx column_block(const AxisPlan& plan, int d, idx n) {
  bool contiguous = true;
  for (int k = 0; k < plan.operands; ++k)
    if (plan.batch[d].stride[k] != 1) contiguous = false;
  return rows_per_task(n, contiguous ? 256 : 64);
}

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

enum class RowOutput { softmax, log_softmax, logsumexp };

// The merged (shift, sum - 1) of a long row from its pieces' (max, sum - 1), in piece
// order; false when the row has a NaN or an infinity at the top (the row kernel handles
// those, with its exact rules for them).
template <class T>
bool merge_pieces(const T* max, const double* sum_minus_one, idx pieces, T* shift,
                  double* merged) {
  T m = -INFINITY;
  for (idx j = 0; j < pieces; ++j) m = max[j] > m ? max[j] : m;
  if (!std::isfinite(m)) return false;
  // s - 1 = sum over pieces of (1 + d_j) exp(m_j - m), minus 1: the pieces whose max is the
  // row's contribute 1 + d_j exactly; the integers are added last, so that with one such
  // piece the tail terms are not rounded against a 1.
  double tails = 0;
  idx ones = 0;
  for (idx j = 0; j < pieces; ++j) {
    if (max[j] == m) {
      tails += sum_minus_one[j];
      ++ones;
    } else if (max[j] != -INFINITY) {
      tails += (1.0 + sum_minus_one[j]) * std::exp(double(max[j]) - double(m));
    }
  }
  *merged = tails + double(ones - 1);
  *shift = m;
  return std::isfinite(*merged);
}

// softmax, log_softmax or logsumexp of rows of n >= kLongRow contiguous elements, each cut
// into pieces. `out` rows are contiguous (softmax, log_softmax) or one value per row.
template <class S>
void long_rows(const SoftmaxKernels<S>& k, RowOutput kind, const AxisPlan& plan,
               const S* xp, S* op, int workers) {
  using T = compute_t<S>;
  const idx n = plan.n;
  const idx rows = position_count(plan, -1);
  const idx pieces = (n + kRowPiece - 1) / kRowPiece;
  const int threads = workers_for(rows * n, workers);
  auto piece_length = [&](idx j) { return n - j * kRowPiece < kRowPiece ? n - j * kRowPiece : kRowPiece; };
  std::vector<T> max(static_cast<size_t>(rows * pieces));
  std::vector<double> sum(static_cast<size_t>(rows * pieces));
  parallel_for(rows * pieces, threads, [&](idx t) {
    const idx r = t / pieces, j = t % pieces;
    const S* x = xp + position_offsets(plan, -1, r)[0] + j * kRowPiece;
    k.logsumexp_piece(x, piece_length(j), &max[t], &sum[t]);
  });
  std::vector<T> shift(static_cast<size_t>(rows));
  std::vector<double> merged(static_cast<size_t>(rows));
  std::vector<char> whole(static_cast<size_t>(rows), 0);  // rows left to the row kernel
  for (idx r = 0; r < rows; ++r) {
    const auto off = position_offsets(plan, -1, r);
    if (!merge_pieces(&max[r * pieces], &sum[r * pieces], pieces, &shift[r], &merged[r])) {
      whole[r] = 1;
      continue;
    }
    if (kind == RowOutput::logsumexp)
      op[off[1]] = storage_from_double<S>(
          double(shift[r] + static_cast<T>(std::log1p(merged[r]))));
  }
  if (kind != RowOutput::logsumexp) {
    const bool stream = rows * n * static_cast<idx>(sizeof(S)) >= kStreamOutputBytes;
    parallel_for(rows * pieces, threads, [&](idx t) {
      const idx r = t / pieces, j = t % pieces;
      if (whole[r]) return;
      const auto off = position_offsets(plan, -1, r);
      const S* x = xp + off[0] + j * kRowPiece;
      S* o = op + off[1] + j * kRowPiece;
      if (kind == RowOutput::softmax)
        k.softmax_piece(x, o, piece_length(j), shift[r],
                        static_cast<T>(1.0 / (1.0 + merged[r])), stream);
      else
        k.log_softmax_piece(x, o, piece_length(j), shift[r],
                            static_cast<T>(std::log1p(merged[r])), stream);
    });
  }
  // Rows with a NaN or an infinity at the top, whole on the row kernel (their outputs are
  // NaN, infinities or -inf throughout: nothing to gain from pieces).
  for (idx r = 0; r < rows; ++r) {
    if (!whole[r]) continue;
    const auto off = position_offsets(plan, -1, r);
    switch (kind) {
      case RowOutput::softmax:
        k.softmax_rows(xp + off[0], 0, op + off[1], 0, 1, n);
        break;
      case RowOutput::log_softmax:
        k.log_softmax_rows(xp + off[0], 0, op + off[1], 0, 1, n);
        break;
      case RowOutput::logsumexp:
        k.logsumexp_rows(xp + off[0], 0, op + off[1], 0, 1, n);
        break;
    }
  }
}

// softmax and log_softmax: out has x's shape.
template <class S>
void normalize(const StridedArray& x, const StridedArray& out, int axis, RowOutput kind,
               int workers) {
  // The target is read once per call: the row/column choice depends on its vector width,
  // and must go with that target's kernels if another thread switches.
  const KernelTable& table = active_kernels();
  const SoftmaxKernels<S>& k = kernels_for<S>(table);
  const bool log = kind == RowOutput::log_softmax;
  idx out_bytes = static_cast<idx>(sizeof(S));
  for (const idx len : out.shape) out_bytes *= len;
  const bool stream = out_bytes >= kStreamOutputBytes;
  const auto rows = log ? (stream ? k.log_softmax_rows_stream : k.log_softmax_rows)
                        : (stream ? k.softmax_rows_stream : k.softmax_rows);
  const auto cols = log ? k.log_softmax_cols : k.softmax_cols;
  const AxisPlan plan = plan_axis({&x, &out}, {true, true}, axis, {sizeof(S), sizeof(S)});
  if (plan.empty_batch || plan.n == 0) return;
  const S* xp = static_cast<const S*>(x.data);
  S* op = static_cast<S*>(out.data);
  const idx n = plan.n;
  const idx x_axis = plan.axis_stride[0], out_axis = plan.axis_stride[1];

  const bool short_row = short_rows(n, lanes_for<S>(table));
  if (x_axis == 1 && out_axis == 1 && (!short_row || plan.batch.empty())) {
    if (n >= kLongRow) return long_rows(k, kind, plan, xp, op, workers);
    // Contiguous rows: hand the kernel the longest batch dimension as its rows, in blocks.
    const int d = pick_batch_dim(plan, [](const BatchDim&) { return true; });
    if (d < 0) return rows(xp, 0, op, 0, 1, n);
    const BatchDim& b = plan.batch[d];
    for_each_block(plan, d, rows_per_task(n), n, workers,
                   [&](const auto& off, idx begin, idx count) {
                     rows(xp + off[0] + begin * b.stride[0], b.stride[0],
                          op + off[1] + begin * b.stride[1], b.stride[1], count, n);
                   });
    return;
  }
  const int d = column_dim(plan);
  if (d < 0) return cols(xp, x_axis, 1, op, out_axis, 1, n, 1);
  const BatchDim& b = plan.batch[d];
  for_each_block(plan, d, column_block(plan, d, n), n, workers,
                 [&](const auto& off, idx begin, idx count) {
                   cols(xp + off[0] + begin * b.stride[0], x_axis, b.stride[0],
                        op + off[1] + begin * b.stride[1], out_axis, b.stride[1], n, count);
                 });
}

template <class S>
void reduce_logsumexp(const StridedArray& x, const StridedArray& out, int axis, int workers) {
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
    if (n >= kLongRow) return long_rows(k, RowOutput::logsumexp, plan, xp, op, workers);
    const int d = pick_batch_dim(plan, [](const BatchDim&) { return true; });
    if (d < 0) return k.logsumexp_rows(xp, 0, op, 0, 1, n);
    const BatchDim& b = plan.batch[d];
    for_each_block(plan, d, rows_per_task(n), n, workers,
                   [&](const auto& off, idx begin, idx count) {
                     k.logsumexp_rows(xp + off[0] + begin * b.stride[0], b.stride[0],
                                      op + off[1] + begin * b.stride[1], b.stride[1], count, n);
                   });
    return;
  }
  const int d = column_dim(plan);
  if (d < 0) return k.logsumexp_cols(xp, x_axis, 1, op, 1, n, 1);
  const BatchDim& b = plan.batch[d];
  for_each_block(plan, d, column_block(plan, d, n), n, workers,
                 [&](const auto& off, idx begin, idx count) {
                   k.logsumexp_cols(xp + off[0] + begin * b.stride[0], x_axis, b.stride[0],
                                    op + off[1] + begin * b.stride[1], b.stride[1], n, count);
                 });
}

// softmax, log_softmax or logsumexp with options: every layout on the row kernels with
// options (run_rows gathers rows that are not contiguous along the axis, a mask
// broadcast along it included); long rows whole, on one thread each.
template <class S>
void with_options(const StridedArray& x, const StridedArray& out, int axis, RowOutput kind,
                  int workers, const SoftmaxOptions& o) {
  using T = compute_t<S>;
  const SoftmaxKernels<S>& k = kernels_for<S>(active_kernels());
  const bool reduce = kind == RowOutput::logsumexp;
  idx out_bytes = static_cast<idx>(sizeof(S));
  for (const idx len : out.shape) out_bytes *= len;
  const bool stream = !reduce && out_bytes >= kStreamOutputBytes;
  if (axis < 0 || axis >= static_cast<int>(x.shape.size()))
    throw std::invalid_argument("axis out of range");
  if (!reduce && x.shape[axis] == 0) return;
  RowOperands ops = {{&x, true, sizeof(S), false}, {&out, !reduce, sizeof(S), true}};
  if (o.where) ops.push_back({o.where, true, 1, false});
  run_rows(ops, axis, workers, [&](const RowBatch& b) {
    RowOptions<S> ro{o.scaled, static_cast<T>(o.scale), nullptr, 0, stream};
    if (o.where) {
      ro.mask = b.at<const std::uint8_t>(2);
      ro.mask_row_stride = b.row_stride[2];
    }
    const S* xp = b.at<const S>(0);
    S* op = b.at<S>(1);
    switch (kind) {
      case RowOutput::softmax:
        k.softmax_rows_opt(xp, b.row_stride[0], op, b.row_stride[1], b.rows, b.n, ro);
        break;
      case RowOutput::log_softmax:
        k.log_softmax_rows_opt(xp, b.row_stride[0], op, b.row_stride[1], b.rows, b.n, ro);
        break;
      case RowOutput::logsumexp:
        k.logsumexp_rows_opt(xp, b.row_stride[0], op, b.row_stride[1], b.rows, b.n, ro);
        break;
    }
  });
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

void softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
             int workers) {
  with_storage_type(dtype, [&](auto s) {
    normalize<decltype(s)>(x, out, axis, RowOutput::softmax, workers);
  });
}

void log_softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
                 int workers) {
  with_storage_type(dtype, [&](auto s) {
    normalize<decltype(s)>(x, out, axis, RowOutput::log_softmax, workers);
  });
}

void logsumexp(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
               int workers) {
  with_storage_type(dtype,
                    [&](auto s) { reduce_logsumexp<decltype(s)>(x, out, axis, workers); });
}

void softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis, int workers,
             const SoftmaxOptions& options) {
  if (!options.scaled && !options.where) return softmax(dtype, x, out, axis, workers);
  with_storage_type(dtype, [&](auto s) {
    with_options<decltype(s)>(x, out, axis, RowOutput::softmax, workers, options);
  });
}

void log_softmax(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
                 int workers, const SoftmaxOptions& options) {
  if (!options.scaled && !options.where) return log_softmax(dtype, x, out, axis, workers);
  with_storage_type(dtype, [&](auto s) {
    with_options<decltype(s)>(x, out, axis, RowOutput::log_softmax, workers, options);
  });
}

void logsumexp(DType dtype, const StridedArray& x, const StridedArray& out, int axis,
               int workers, const SoftmaxOptions& options) {
  if (!options.scaled && !options.where) return logsumexp(dtype, x, out, axis, workers);
  with_storage_type(dtype, [&](auto s) {
    with_options<decltype(s)>(x, out, axis, RowOutput::logsumexp, workers, options);
  });
}

void exp(DType dtype, const StridedArray& x, const StridedArray& out, bool nonpositive) {
  with_storage_type(dtype, [&](auto s) { exp_typed<decltype(s)>(x, out, nonpositive); });
}

}  // namespace logitkit
