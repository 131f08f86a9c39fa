// Softmax-family kernels: softmax, log_softmax and logsumexp over rows or columns.
//
// Included only from kernels_target.cpp inside the per-target namespace (see exp.inl).
//
// Two layouts, both row-range based and free of global state:
//   *_rows: the reduced axis is contiguous; `rows` independent rows, each `n` long, start
//           `x_row_stride` elements apart.
//   *_cols: the reduced axis is strided (`x_axis_stride` elements between classes) and the
//           positions across it are contiguous; the kernel vectorizes across `cols`
//           positions at once instead of gathering each strided row.
//
// The row algorithm, per row: (1) m = max; (2) shift = m, or 0 when m = -inf (a row of
// -inf, so that exp(x - shift) = 0 instead of exp(-inf + inf) = NaN); e = exp(x - shift),
// s = sum e; (3) softmax = e / s, log_softmax = (x - shift) - log s. One exp per element.
// A row that fits in L2 is read from DRAM once; pass 3 of softmax re-reads `out` from cache.
// The numerical contract (DESIGN.md) falls out of IEEE arithmetic:
//   -inf entries: exp(-inf) = 0, so they are ignored by the sum and get p = 0, logp = -inf.
//   all -inf: s = 0, so softmax = 0 * inf = NaN, log_softmax = -inf - -inf = NaN,
//             logsumexp = 0 + log 0 = -inf.
//   +inf: shift = +inf, x - shift is NaN at the inf, so s = NaN and the row is NaN; only
//         logsumexp needs a fix-up (+inf unless the row also holds a NaN).
//   NaN: exp(NaN) = NaN poisons s. (The max may or may not propagate NaN depending on the
//        instruction chosen; either way the result is NaN.)

template <class T>
constexpr T lk_neg_inf() {
  return -__builtin_huge_val();
}

inline float lk_log(float x) { return __builtin_logf(x); }
inline double lk_log(double x) { return __builtin_log(x); }

// Rows are processed in blocks of one vector (kLanes elements), written as fixed-length
// inner loops that the compiler turns into single vector instructions, with per-lane
// accumulators. The last partial block is copied into a padded block (padding -inf, whose
// exp is 0), so short rows and tails run the same vector code instead of a scalar loop.
template <class T>
constexpr idx lk_lanes() {
  return LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
}

template <class T>
inline void lk_load_padded(T* block, const T* x, idx count) {
  constexpr idx L = lk_lanes<T>();
  for (idx j = 0; j < L; ++j) block[j] = lk_neg_inf<T>();
  for (idx j = 0; j < count; ++j) block[j] = x[j];
}

// Horizontal reductions of a lane array (one vector): as simd reductions, the compiler
// emits its shuffle tree and keeps the array in a register.
template <class T>
inline T lk_reduce_max(const T* acc) {
  T m = acc[0];
#pragma omp simd reduction(max : m)
  for (idx j = 0; j < lk_lanes<T>(); ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

template <class T>
inline T lk_reduce_sum(const T* acc) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (idx j = 0; j < lk_lanes<T>(); ++j) s += acc[j];
  return s;
}

template <class T>
inline T lk_row_max(const T* __restrict x, idx n) {
  constexpr idx L = lk_lanes<T>();
  T acc[L];
  for (idx j = 0; j < L; ++j) acc[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
#pragma omp simd
    for (idx j = 0; j < L; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  }
  if (i < n) {
    T block[L];
    lk_load_padded(block, x + i, n - i);
#pragma omp simd
    for (idx j = 0; j < L; ++j) acc[j] = block[j] > acc[j] ? block[j] : acc[j];
  }
  return lk_reduce_max(acc);
}

template <class T>
inline T lk_shift_for(T m) {
  return m == lk_neg_inf<T>() ? T(0) : m;
}

// Sum of exp(x - shift) over a row, storing the exponentials to `e` unless it is null.
// x and e may be the same row (in place): each element is read before it is written.
template <class T>
inline T lk_exp_sum_store(const T* x, T* e, idx n, T shift) {
  constexpr idx L = lk_lanes<T>();
  T acc[L];
  for (idx j = 0; j < L; ++j) acc[j] = 0;
  idx i = 0;
  if (e) {
    for (; i + L <= n; i += L) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        const T v = lk_exp_nonpositive(x[i + j] - shift);
        e[i + j] = v;
        acc[j] += v;
      }
    }
  } else {
    for (; i + L <= n; i += L) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) acc[j] += lk_exp_nonpositive(x[i + j] - shift);
    }
  }
  if (i < n) {
    T block[L];
    lk_load_padded(block, x + i, n - i);
#pragma omp simd
    for (idx j = 0; j < L; ++j) {
      block[j] = lk_exp_nonpositive(block[j] - shift);
      acc[j] += block[j];
    }
    if (e)
      for (idx j = 0; j < n - i; ++j) e[i + j] = block[j];
  }
  return lk_reduce_sum(acc);
}

template <class T>
inline bool lk_row_has_nan(const T* x, idx n) {
  for (idx i = 0; i < n; ++i)
    if (x[i] != x[i]) return true;
  return false;
}

template <class T>
void softmax_rows(const T* x, idx x_row_stride, T* out, idx out_row_stride, idx rows, idx n) {
  for (idx r = 0; r < rows; ++r) {
    const T* xr = x + r * x_row_stride;
    T* orow = out + r * out_row_stride;
    const T shift = lk_shift_for(lk_row_max(xr, n));
    const T inv = T(1) / lk_exp_sum_store(xr, orow, n, shift);
#pragma omp simd
    for (idx i = 0; i < n; ++i) orow[i] *= inv;
  }
}

template <class T>
void log_softmax_rows(const T* x, idx x_row_stride, T* out, idx out_row_stride, idx rows,
                      idx n) {
  for (idx r = 0; r < rows; ++r) {
    const T* xr = x + r * x_row_stride;
    T* orow = out + r * out_row_stride;
    const T shift = lk_shift_for(lk_row_max(xr, n));
    const T log_sum = lk_log(lk_exp_sum_store(xr, static_cast<T*>(nullptr), n, shift));
    // (x - shift) - log_sum, not x - (shift + log_sum): with shift = 1e30 the latter would
    // round log_sum away.
#pragma omp simd
    for (idx i = 0; i < n; ++i) orow[i] = (xr[i] - shift) - log_sum;
  }
}

template <class T>
inline T lk_logsumexp_finish(T m, T shift, T sum, const T* xr, idx n) {
  if (m == -lk_neg_inf<T>()) return lk_row_has_nan(xr, n) ? sum : m;  // sum is NaN here
  return shift + lk_log(sum);
}

template <class T>
void logsumexp_rows(const T* x, idx x_row_stride, T* out, idx out_stride, idx rows, idx n) {
  for (idx r = 0; r < rows; ++r) {
    const T* xr = x + r * x_row_stride;
    if (n == 0) {
      out[r * out_stride] = lk_neg_inf<T>();
      continue;
    }
    const T m = lk_row_max(xr, n);
    const T shift = lk_shift_for(m);
    const T sum = lk_exp_sum_store(xr, static_cast<T*>(nullptr), n, shift);
    out[r * out_stride] = lk_logsumexp_finish(m, shift, sum, xr, n);
  }
}

// Column kernels. The block width keeps a block of the input and output (n x width
// elements each) in L2 between the passes, and is at least a few vectors wide.
template <class T>
inline idx lk_column_block(idx n) {
  constexpr idx max_width = 512;
  constexpr idx min_width = 64;
  const idx budget_elements = (384 * 1024) / static_cast<idx>(sizeof(T));
  idx width = n > 0 ? budget_elements / n : max_width;
  width = width > max_width ? max_width : width;
  width = width < min_width ? min_width : width;
  return width & ~idx(15);
}

enum class LkNormalize { softmax, log_softmax };

template <class T, LkNormalize kind>
void lk_normalize_cols(const T* x, idx x_axis_stride, T* out, idx out_axis_stride, idx n,
                       idx cols) {
  constexpr idx max_width = 512;
  T shift[max_width];
  T acc[max_width];
  const idx block = lk_column_block<T>(n);
  for (idx j0 = 0; j0 < cols; j0 += block) {
    const idx w = cols - j0 < block ? cols - j0 : block;
    const T* xb = x + j0;
    T* ob = out + j0;
    for (idx j = 0; j < w; ++j) shift[j] = lk_neg_inf<T>();
    for (idx c = 0; c < n; ++c) {
      const T* xr = xb + c * x_axis_stride;
#pragma omp simd
      for (idx j = 0; j < w; ++j) shift[j] = xr[j] > shift[j] ? xr[j] : shift[j];
    }
    for (idx j = 0; j < w; ++j) {
      shift[j] = lk_shift_for(shift[j]);
      acc[j] = 0;
    }
    for (idx c = 0; c < n; ++c) {
      const T* xr = xb + c * x_axis_stride;
      T* orow = ob + c * out_axis_stride;
      if (kind == LkNormalize::softmax) {
#pragma omp simd
        for (idx j = 0; j < w; ++j) {
          const T v = lk_exp_nonpositive(xr[j] - shift[j]);
          orow[j] = v;
          acc[j] += v;
        }
      } else {
#pragma omp simd
        for (idx j = 0; j < w; ++j) acc[j] += lk_exp_nonpositive(xr[j] - shift[j]);
      }
    }
    if (kind == LkNormalize::softmax) {
      for (idx j = 0; j < w; ++j) acc[j] = T(1) / acc[j];
      for (idx c = 0; c < n; ++c) {
        T* orow = ob + c * out_axis_stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) orow[j] *= acc[j];
      }
    } else {
      for (idx j = 0; j < w; ++j) acc[j] = lk_log(acc[j]);
      for (idx c = 0; c < n; ++c) {
        const T* xr = xb + c * x_axis_stride;
        T* orow = ob + c * out_axis_stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) orow[j] = (xr[j] - shift[j]) - acc[j];
      }
    }
  }
}

template <class T>
void softmax_cols(const T* x, idx x_axis_stride, T* out, idx out_axis_stride, idx n,
                  idx cols) {
  lk_normalize_cols<T, LkNormalize::softmax>(x, x_axis_stride, out, out_axis_stride, n, cols);
}

template <class T>
void log_softmax_cols(const T* x, idx x_axis_stride, T* out, idx out_axis_stride, idx n,
                      idx cols) {
  lk_normalize_cols<T, LkNormalize::log_softmax>(x, x_axis_stride, out, out_axis_stride, n,
                                                  cols);
}

template <class T>
void logsumexp_cols(const T* x, idx x_axis_stride, T* out, idx n, idx cols) {
  constexpr idx max_width = 512;
  T maxv[max_width];
  T shift[max_width];
  T acc[max_width];
  const idx block = lk_column_block<T>(n);
  for (idx j0 = 0; j0 < cols; j0 += block) {
    const idx w = cols - j0 < block ? cols - j0 : block;
    const T* xb = x + j0;
    for (idx j = 0; j < w; ++j) maxv[j] = lk_neg_inf<T>();
    for (idx c = 0; c < n; ++c) {
      const T* xr = xb + c * x_axis_stride;
#pragma omp simd
      for (idx j = 0; j < w; ++j) maxv[j] = xr[j] > maxv[j] ? xr[j] : maxv[j];
    }
    for (idx j = 0; j < w; ++j) {
      shift[j] = lk_shift_for(maxv[j]);
      acc[j] = 0;
    }
    for (idx c = 0; c < n; ++c) {
      const T* xr = xb + c * x_axis_stride;
#pragma omp simd
      for (idx j = 0; j < w; ++j) acc[j] += lk_exp_nonpositive(xr[j] - shift[j]);
    }
    for (idx j = 0; j < w; ++j) {
      T result = shift[j] + lk_log(acc[j]);
      if (maxv[j] == -lk_neg_inf<T>()) {
        // +inf in this column: +inf unless a NaN is there too (rare: rescan the column).
        result = maxv[j];
        for (idx c = 0; c < n; ++c) {
          const T v = xb[c * x_axis_stride + j];
          if (v != v) result = v;
        }
      }
      out[j0 + j] = result;
    }
  }
}

template <class T>
void exp_array(const T* x, T* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_exp(x[i]);
}

template <class T>
void exp_nonpositive_array(const T* x, T* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_exp_nonpositive(x[i]);
}
