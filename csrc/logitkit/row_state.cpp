#include "row_state.hpp"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "dispatch.hpp"
#include "parallel.hpp"
#include "storage.hpp"

namespace logitkit {
namespace {

// Checks a C-contiguous array of `dims` dimensions of `element` bytes.
void check_contiguous(const StridedArray& a, std::size_t dims, idx element, const char* what) {
  if (a.shape.size() != dims) throw std::invalid_argument(std::string(what) + ": wrong rank");
  for (const idx len : a.shape)
    if (len == 0) return;  // no elements: any strides
  idx stride = element;
  for (std::size_t d = dims; d-- > 0;) {
    if (a.shape[d] > 1 && a.strides[d] != stride)
      throw std::invalid_argument(std::string(what) + " must be C-contiguous");
    stride *= a.shape[d];
  }
}

// The distance between rows of a rows x n array whose rows are contiguous, in elements
// (row blocks of a larger array, e.g. a Dask block of columns, are used in place).
idx row_stride_of(const StridedArray& a, idx element, const char* what) {
  if (a.shape.size() != 2) throw std::invalid_argument(std::string(what) + ": wrong rank");
  if (a.shape[0] == 0) return a.shape[1];  // no rows: any strides
  if (a.shape[1] > 1 && a.strides[1] != element)
    throw std::invalid_argument(std::string(what) + " must be contiguous along its rows");
  if (a.shape[0] <= 1) return a.shape[1];
  if (a.strides[0] % element != 0 || a.strides[0] / element < a.shape[1])
    throw std::invalid_argument(std::string(what) + ": rows must not overlap");
  return a.strides[0] / element;
}

// Runs row(r) for r in [0, rows), in tasks of whole rows fixed by the shape (so the
// results are the same for any number of workers).
template <class F>
void for_each_row(idx rows, idx n, int workers, F&& row) {
  const idx block = rows_per_task(n > 0 ? n : 1);
  const idx tasks = (rows + block - 1) / block;
  parallel_for(tasks, workers_for(rows * n, workers), [&](idx t) {
    const idx end = (t + 1) * block < rows ? (t + 1) * block : rows;
    for (idx r = t * block; r < end; ++r) row(r);
  });
}

// The state of a block row whose kernel sum is not finite, or whose maximum is not: it has
// a NaN, or +inf (no NaN), or is -inf throughout. Rare: a plain scan.
template <class S>
void non_finite_state(const S* x, idx n, const std::uint8_t* mask, double* state) {
  bool plus_inf = false;
  for (idx j = 0; j < n; ++j) {
    if (mask && mask[j] == 0) continue;
    const double v = storage_to_double(x[j]);
    if (std::isnan(v)) {
      state[0] = state[1] = NAN;
      return;
    }
    if (v == INFINITY) plus_inf = true;
  }
  state[0] = plus_inf ? INFINITY : -INFINITY;
  state[1] = 0;
}

// The mask's rows (null without one), checked against x's shape.
const std::uint8_t* mask_rows(const StateOptions& o, const StridedArray& x, idx* row_stride) {
  *row_stride = 0;
  if (!o.mask) return nullptr;
  if (o.mask->shape != x.shape) throw std::invalid_argument("where must have x's shape");
  *row_stride = row_stride_of(*o.mask, 1, "where");
  return static_cast<const std::uint8_t*>(o.mask->data);
}

template <class S>
void row_states_typed(const StridedArray& x, const StridedArray& state, int workers,
                      const StateOptions& o) {
  using T = compute_t<S>;
  idx mask_row = 0;
  const std::uint8_t* mask = mask_rows(o, x, &mask_row);
  const bool plain = !o.scaled && !mask;
  const idx x_row = row_stride_of(x, sizeof(S), "x");
  check_contiguous(state, 2, sizeof(double), "state");
  const idx rows = x.shape[0], n = x.shape[1], fields = state.shape[1];
  if (state.shape[0] != rows || fields < 2)
    throw std::invalid_argument("state must have x's rows and at least 2 fields");
  const SoftmaxKernels<S>& k = kernels_for<S>(active_kernels());
  const S* xp = static_cast<const S*>(x.data);
  double* sp = static_cast<double*>(state.data);
  for_each_row(rows, n, workers, [&](idx r) {
    const S* row = xp + r * x_row;
    double* st = sp + r * fields;
    if (n == 0) {
      st[0] = -INFINITY;
      st[1] = 0;
      return;
    }
    const std::uint8_t* mrow = mask ? mask + r * mask_row : nullptr;
    T m;
    double s;
    if (plain) {
      k.logsumexp_piece(row, n, &m, &s);
    } else {
      const RowOptions<S> ro{o.scaled, static_cast<T>(o.scale), mrow, 0, false};
      k.logsumexp_piece_opt(row, n, ro, &m, &s);
    }
    if (std::isfinite(m) && std::isfinite(s)) {
      st[0] = m;
      st[1] = s;
    } else {
      non_finite_state(row, n, mrow, st);
    }
  });
}

template <class S>
void from_state_typed(const StridedArray& x, const StridedArray& state, const double* row_scale,
                      const StridedArray& out, bool log, int workers, const StateOptions& o) {
  using T = compute_t<S>;
  idx mask_row = 0;
  const std::uint8_t* mask = mask_rows(o, x, &mask_row);
  const T scale_t = static_cast<T>(o.scale);
  const idx x_row = row_stride_of(x, sizeof(S), "x");
  const idx out_stride = row_stride_of(out, sizeof(S), "out");
  check_contiguous(state, 2, sizeof(double), "state");
  const idx rows = x.shape[0], n = x.shape[1], fields = state.shape[1];
  if (out.shape != x.shape) throw std::invalid_argument("out must have x's shape");
  if (state.shape[0] != rows || fields < 2)
    throw std::invalid_argument("state must have x's rows and at least 2 fields");
  const SoftmaxKernels<S>& k = kernels_for<S>(active_kernels());
  const S* xp = static_cast<const S*>(x.data);
  S* op = static_cast<S*>(out.data);
  const double* sp = static_cast<const double*>(state.data);
  const bool stream = rows * n * static_cast<idx>(sizeof(S)) >= kStreamOutputBytes;
  for_each_row(rows, n, workers, [&](idx r) {
    const S* row = xp + r * x_row;
    S* out_row = op + r * out_stride;
    const double m = sp[r * fields], s = sp[r * fields + 1];
    const double scale = row_scale ? row_scale[r] : 1.0;
    if (!log && scale == 0) {
      const S zero = storage_from_double<S>(0.0);
      for (idx j = 0; j < n; ++j) out_row[j] = zero;
    } else if (!std::isfinite(m) || !std::isfinite(s)) {
      const S nan = storage_from_double<S>(NAN);
      for (idx j = 0; j < n; ++j) out_row[j] = nan;
    } else if (log) {
      if (o.scaled)
        k.log_softmax_piece_scaled(row, out_row, n, static_cast<T>(m), scale_t,
                                   static_cast<T>(std::log1p(s)), stream);
      else
        k.log_softmax_piece(row, out_row, n, static_cast<T>(m), static_cast<T>(std::log1p(s)),
                            stream);
    } else {
      if (o.scaled)
        k.softmax_piece_scaled(row, out_row, n, static_cast<T>(m), scale_t,
                               static_cast<T>(scale / (1.0 + s)), stream);
      else
        k.softmax_piece(row, out_row, n, static_cast<T>(m), static_cast<T>(scale / (1.0 + s)),
                        stream);
    }
    if (mask) {
      // Left-out classes: p = 0, log p = -inf (as the row kernels with where=).
      const std::uint8_t* mrow = mask + r * mask_row;
      const S left_out = storage_from_double<S>(log ? -INFINITY : 0.0);
      for (idx j = 0; j < n; ++j)
        if (mrow[j] == 0) out_row[j] = left_out;
    }
  });
}

}  // namespace

void row_states(DType dtype, const StridedArray& x, const StridedArray& state, int workers,
                const StateOptions& options) {
  with_storage_type(dtype,
                    [&](auto s) { row_states_typed<decltype(s)>(x, state, workers, options); });
}

void merge_row_states(const StridedArray& states, const StridedArray& out, double scale) {
  check_contiguous(states, 3, sizeof(double), "states");
  check_contiguous(out, 2, sizeof(double), "out");
  const idx rows = states.shape[0], k = states.shape[1], fields = states.shape[2];
  if (out.shape[0] != rows || out.shape[1] != fields || fields < 2)
    throw std::invalid_argument("out must be rows x fields, with at least 2 fields");
  const double* sp = static_cast<const double*>(states.data);
  double* op = static_cast<double*>(out.data);
  for (idx r = 0; r < rows; ++r) {
    const double* st = sp + r * k * fields;
    double* o = op + r * fields;
    bool nan = false, plus_inf = false;
    double m = -INFINITY;
    for (idx j = 0; j < k; ++j) {
      const double mj = st[j * fields];
      if (std::isnan(mj) || std::isnan(st[j * fields + 1]))
        nan = true;
      else if (mj == INFINITY)
        plus_inf = true;
      else if (mj > m)
        m = mj;
    }
    if (nan || plus_inf || m == -INFINITY) {
      o[0] = nan ? NAN : plus_inf ? INFINITY : -INFINITY;
      o[1] = nan ? NAN : 0;
      continue;
    }
    // s = sum over blocks of (1 + s_j) exp(m_j - m), minus 1: the blocks whose maximum is
    // the row's contribute 1 + s_j exactly, and their 1s are added last, so that with one
    // such block the small terms are not rounded against a 1 (as the long-row merge).
    double tails = 0;
    idx ones = 0;
    for (idx j = 0; j < k; ++j) {
      const double mj = st[j * fields], sj = st[j * fields + 1];
      if (mj == m) {
        tails += sj;
        ++ones;
      } else if (mj != -INFINITY) {
        tails += (1.0 + sj) * std::exp((mj - m) * scale);
      }
    }
    o[0] = m;
    o[1] = tails + static_cast<double>(ones - 1);
  }
}

void rows_from_state(DType dtype, const StridedArray& x, const StridedArray& state,
                     const double* row_scale, const StridedArray& out, bool log, int workers,
                     const StateOptions& options) {
  with_storage_type(dtype, [&](auto s) {
    from_state_typed<decltype(s)>(x, state, row_scale, out, log, workers, options);
  });
}

}  // namespace logitkit
