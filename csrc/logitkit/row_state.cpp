#include "row_state.hpp"

#include <cmath>
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

// Rows per task for rows of n elements (and at least one row of states to write).
idx task_rows(idx n) { return rows_per_task(n > 0 ? n : 1); }

// The state of a block row whose kernel sum is not finite, or whose maximum is not: it has
// a NaN, or +inf (no NaN), or is -inf throughout. Rare: a plain scan.
template <class S>
void non_finite_state(const S* x, idx n, double* state) {
  bool plus_inf = false;
  for (idx j = 0; j < n; ++j) {
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

template <class S>
void row_states_typed(const StridedArray& x, const StridedArray& state, int workers) {
  using T = compute_t<S>;
  const idx x_row = row_stride_of(x, sizeof(S), "x");
  check_contiguous(state, 2, sizeof(double), "state");
  const idx rows = x.shape[0], n = x.shape[1], fields = state.shape[1];
  if (state.shape[0] != rows || fields < 2)
    throw std::invalid_argument("state must have x's rows and at least 2 fields");
  const SoftmaxKernels<S>& k = kernels_for<S>(active_kernels());
  const S* xp = static_cast<const S*>(x.data);
  double* sp = static_cast<double*>(state.data);
  const idx block = task_rows(n);
  const idx tasks = (rows + block - 1) / block;
  parallel_for(tasks, workers_for(rows * n, workers), [&](idx t) {
    const idx end = (t + 1) * block < rows ? (t + 1) * block : rows;
    for (idx r = t * block; r < end; ++r) {
      const S* row = xp + r * x_row;
      double* st = sp + r * fields;
      if (n == 0) {
        st[0] = -INFINITY;
        st[1] = 0;
        continue;
      }
      T m;
      double s;
      k.logsumexp_piece(row, n, &m, &s);
      if (std::isfinite(m) && std::isfinite(s)) {
        st[0] = m;
        st[1] = s;
      } else {
        non_finite_state(row, n, st);
      }
    }
  });
}

template <class S>
void from_state_typed(const StridedArray& x, const StridedArray& state, const double* row_scale,
                      const StridedArray& out, bool log, int workers) {
  using T = compute_t<S>;
  const idx x_row = row_stride_of(x, sizeof(S), "x");
  const idx out_row = row_stride_of(out, sizeof(S), "out");
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
  const idx block = task_rows(n);
  const idx tasks = (rows + block - 1) / block;
  parallel_for(tasks, workers_for(rows * n, workers), [&](idx t) {
    const idx end = (t + 1) * block < rows ? (t + 1) * block : rows;
    for (idx r = t * block; r < end; ++r) {
      const S* row = xp + r * x_row;
      S* o = op + r * out_row;
      const double m = sp[r * fields], s = sp[r * fields + 1];
      const double scale = row_scale ? row_scale[r] : 1.0;
      if (!log && scale == 0) {
        const S zero = storage_from_double<S>(0.0);
        for (idx j = 0; j < n; ++j) o[j] = zero;
      } else if (!std::isfinite(m) || !std::isfinite(s)) {
        const S nan = storage_from_double<S>(NAN);
        for (idx j = 0; j < n; ++j) o[j] = nan;
      } else if (log) {
        k.log_softmax_piece(row, o, n, static_cast<T>(m), static_cast<T>(std::log1p(s)), stream);
      } else {
        k.softmax_piece(row, o, n, static_cast<T>(m), static_cast<T>(scale / (1.0 + s)), stream);
      }
    }
  });
}

}  // namespace

void row_states(DType dtype, const StridedArray& x, const StridedArray& state, int workers) {
  with_storage_type(dtype, [&](auto s) { row_states_typed<decltype(s)>(x, state, workers); });
}

void merge_row_states(const StridedArray& states, const StridedArray& out) {
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
        tails += (1.0 + sj) * std::exp(mj - m);
      }
    }
    o[0] = m;
    o[1] = tails + static_cast<double>(ones - 1);
  }
}

void rows_from_state(DType dtype, const StridedArray& x, const StridedArray& state,
                     const double* row_scale, const StridedArray& out, bool log, int workers) {
  with_storage_type(dtype, [&](auto s) {
    from_state_typed<decltype(s)>(x, state, row_scale, out, log, workers);
  });
}

}  // namespace logitkit
