// Softmax-family kernels: softmax, log_softmax and logsumexp over rows or columns.
//
// Included only from kernels_target.cpp inside the per-target namespace (see exp.inl).
//
// Two layouts, both row-range based and free of global state:
//   *_rows: the reduced axis is contiguous; `rows` independent rows, each `n` long, start
//           `x_row_stride` elements apart.
//   *_cols: the kernel vectorizes across `cols` positions at once, `x_col_stride` elements
//           apart, each with its own reduction over `n` classes `x_axis_stride` apart: a
//           non-last axis (columns contiguous), short rows (columns a row apart), or a
//           view with no contiguous direction (gathered block by block).
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
  return -LOGITKIT_HUGE_VAL();
}

inline float lk_log(float x) { return LOGITKIT_LOGF(x); }
inline double lk_log(double x) { return LOGITKIT_LOG(x); }

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

// Sums of exponentials are accumulated in two levels: each vector of terms goes into lane
// accumulators of the input's type that start fresh every kSumBlock vectors, and those
// partial sums go into double lane accumulators.
//
// The typical LLM row is one dominant logit (exp = 1) over a long tail of tiny terms. A
// float accumulator that holds the 1 rounds each tiny term it adds to a multiple of
// 2^-23: over a whole row of 1000 terms of exp(-12) that is a relative error of ~1e-6 in
// the sum, which the tests' 1e-6 bound on log_softmax catches. With blocks of 4 vectors no
// float accumulator takes more than 4 additions (error <= 2.4e-7, and the conversion to
// double costs a quarter of what converting every vector would); double rows of 2^17
// terms get ~1e-14 instead of ~1e-12. For double input the totals are also compensated
// (Kahan), so long columns (2^17 rows along axis 0) stay as accurate; for float input the
// totals' own rounding (2^-53 per addition) is negligible and compensation is skipped
// (logsumexp 4096x1000 float32: ~1.56x -> ~1.48x memcpy).
// Kahan summation step (terms here are all >= 0). Relies on IEEE evaluation order, which
// the kernels' flags keep (no -ffast-math / -fassociative-math).
inline void lk_kahan_add(double& total, double& carry, double value) {
  const double y = value - carry;
  const double t = total + y;
  carry = (t - total) - y;
  total = t;
}

template <class T>
struct LkSum {
  static constexpr idx L = lk_lanes<T>();
  static constexpr idx kSumBlock = sizeof(T) == sizeof(float) ? 4 : 64;
  double total[L];
  double carry[L];  // Kahan compensation of total: double rows may have 2^20+ terms
  T part[L];
  idx count = 0;
  LkSum() {
    for (idx j = 0; j < L; ++j) total[j] = 0;
    for (idx j = 0; j < L; ++j) carry[j] = 0;
    for (idx j = 0; j < L; ++j) part[j] = 0;
  }
  // Adds one vector of terms.
  void add(const T* v) {
#pragma omp simd
    for (idx j = 0; j < L; ++j) part[j] += v[j];
    if (++count == kSumBlock) flush();
  }
  void flush() {
    if (sizeof(T) == sizeof(float)) {
      // float partial sums into double totals: the totals' own rounding (2^-53 per
      // addition) is negligible, no compensation needed.
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        total[j] += static_cast<double>(part[j]);
        part[j] = 0;
      }
    } else {
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        lk_kahan_add(total[j], carry[j], static_cast<double>(part[j]));
        part[j] = 0;
      }
    }
    count = 0;
  }
  T result() {
    flush();
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (idx j = 0; j < L; ++j) s += total[j];
    return static_cast<T>(s);
  }
};

// Sum of exp(x - shift) over a row, storing the exponentials to `e` unless it is null.
// x and e may be the same row (in place): each element is read before it is written.
//
// With kNext, the same loop also takes the maximum of the *next* row (same length) into
// *next_max. This is the row kernels' software pipeline: the max pass only streams data in
// from L3/DRAM while the exp pass is bound by arithmetic, so running the next row's max
// inside this row's exp loop hides most of the max pass.
//
// With kStoreShifted, `e` receives x - shift instead of the exponentials (log_softmax's
// pass 3 then only subtracts log s in place). Writing `out` here, in the loop that is
// bound by arithmetic, moves the cost of fetching its cache lines for writing out of the
// final pass, which is bound by memory: 512 x 32000 log_softmax went from ~2.2x to ~1.6x
// memcpy.
template <bool kNext, bool kStoreShifted = false, class T>
inline T lk_exp_sum_store(const T* x, T* e, idx n, T shift, const T* next, T* next_max) {
  constexpr idx L = lk_lanes<T>();
  LkSum<T> sum;
  T v[L];
  T macc[L];
  for (idx j = 0; j < L; ++j) macc[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = lk_exp_nonpositive(x[i + j] - shift);
    if (e) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) e[i + j] = kStoreShifted ? x[i + j] - shift : v[j];
    }
    sum.add(v);
    if (kNext) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = next[i + j] > macc[j] ? next[i + j] : macc[j];
    }
  }
  if (i < n) {
    lk_load_padded(v, x + i, n - i);
    if (e && kStoreShifted)
      for (idx j = 0; j < n - i; ++j) e[i + j] = v[j] - shift;
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = lk_exp_nonpositive(v[j] - shift);
    if (e && !kStoreShifted)
      for (idx j = 0; j < n - i; ++j) e[i + j] = v[j];
    sum.add(v);
    if (kNext) {
      T block[L];
      lk_load_padded(block, next + i, n - i);
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = block[j] > macc[j] ? block[j] : macc[j];
    }
  }
  if (kNext) *next_max = lk_reduce_max(macc);
  return sum.result();
}

// Runs a row kernel's per-row work over `rows` rows with the max of each row computed in
// the previous row's exp pass (see lk_exp_sum_store). row_work(r, m, next, next_max)
// handles row r, whose max is m; it must compute next's max into *next_max (next is null
// for the last row).
template <class T, class RowWork>
inline void lk_pipelined_rows(const T* x, idx x_row_stride, idx rows, idx n, RowWork row_work) {
  if (rows <= 0) return;
  T m = lk_row_max(x, n);
  for (idx r = 0; r < rows; ++r) {
    const T* next = r + 1 < rows ? x + (r + 1) * x_row_stride : nullptr;
    T next_max = 0;
    row_work(r, m, next, &next_max);
    m = next_max;
  }
}

// exp sum of row xr, with the next row's max when there is a next row.
template <bool kStoreShifted = false, class T>
inline T lk_exp_sum_row(const T* xr, T* e, idx n, T shift, const T* next, T* next_max) {
  return next ? lk_exp_sum_store<true, kStoreShifted>(xr, e, n, shift, next, next_max)
              : lk_exp_sum_store<false, kStoreShifted>(xr, e, n, shift, next, next_max);
}

template <class T>
inline bool lk_row_has_nan(const T* x, idx n) {
  for (idx i = 0; i < n; ++i)
    if (x[i] != x[i]) return true;
  return false;
}

template <class T>
void softmax_rows(const T* x, idx x_row_stride, T* out, idx out_row_stride, idx rows, idx n) {
  lk_pipelined_rows(x, x_row_stride, rows, n, [&](idx r, T m, const T* next, T* next_max) {
    const T* xr = x + r * x_row_stride;
    T* orow = out + r * out_row_stride;
    const T inv = T(1) / lk_exp_sum_row(xr, orow, n, lk_shift_for(m), next, next_max);
#pragma omp simd
    for (idx i = 0; i < n; ++i) orow[i] *= inv;
  });
}

template <class T>
void log_softmax_rows(const T* x, idx x_row_stride, T* out, idx out_row_stride, idx rows,
                      idx n) {
  lk_pipelined_rows(x, x_row_stride, rows, n, [&](idx r, T m, const T* next, T* next_max) {
    const T* xr = x + r * x_row_stride;
    T* orow = out + r * out_row_stride;
    const T shift = lk_shift_for(m);
    // Pass 2 leaves x - shift in out; pass 3 subtracts log s. ((x - shift) - log_sum, not
    // x - (shift + log_sum): with shift = 1e30 the latter would round log_sum away.)
    const T log_sum = lk_log(lk_exp_sum_row<true>(xr, orow, n, shift, next, next_max));
#pragma omp simd
    for (idx i = 0; i < n; ++i) orow[i] -= log_sum;
  });
}

template <class T>
inline T lk_logsumexp_finish(T m, T shift, T sum, const T* xr, idx n) {
  if (m == -lk_neg_inf<T>()) return lk_row_has_nan(xr, n) ? sum : m;  // sum is NaN here
  return shift + lk_log(sum);
}

template <class T>
void logsumexp_rows(const T* x, idx x_row_stride, T* out, idx out_stride, idx rows, idx n) {
  if (n == 0) {
    for (idx r = 0; r < rows; ++r) out[r * out_stride] = lk_neg_inf<T>();
    return;
  }
  lk_pipelined_rows(x, x_row_stride, rows, n, [&](idx r, T m, const T* next, T* next_max) {
    const T* xr = x + r * x_row_stride;
    const T shift = lk_shift_for(m);
    const T sum = lk_exp_sum_row(xr, static_cast<T*>(nullptr), n, shift, next, next_max);
    out[r * out_stride] = lk_logsumexp_finish(m, shift, sum, xr, n);
  });
}

// Column kernels: the reduced axis is strided and the kernel vectorizes across `cols`
// independent positions ("columns") at once. Columns are either contiguous
// (x_col_stride == 1: a non-last axis of a C-ordered array) or strided (short rows of a
// contiguous array, x_col_stride = row length: the small-class-count path, vectorized
// across rows; or views with no contiguous direction at all).
//
// Columns are processed in blocks of `width`. A strided block is first gathered into a
// contiguous scratch block (n x width); a contiguous one is read in place, in passes that
// each stream the block's rows, so the hardware prefetcher sees long runs (4 KiB per row
// for float). Measured on a 1000 x 4096 float32 array along axis 0: widths from 256 to
// 2048 columns all land within 15% of each other; the block stays in L3, not L2.
template <class T>
inline idx lk_column_block(idx n) {
  constexpr idx max_width = 1024;
  constexpr idx min_width = 16;
  const idx budget_elements = (4096 * 1024) / static_cast<idx>(sizeof(T));
  idx width = n > 0 ? budget_elements / n : max_width;
  width = width > max_width ? max_width : width;
  width = width < min_width ? min_width : width;
  return width & ~idx(15);
}

constexpr idx lk_max_column_block = 1024;

// Scratch memory for one call; plain operator new, so nothing here is shared between
// targets' translation units.
template <class T>
struct LkScratch {
  T* data = nullptr;
  explicit LkScratch(idx count) {
    if (count > 0) data = static_cast<T*>(::operator new(count * sizeof(T)));
  }
  ~LkScratch() { ::operator delete(data); }
  LkScratch(const LkScratch&) = delete;
  LkScratch& operator=(const LkScratch&) = delete;
};

// A block of columns as the passes see it: row c of the block starts at base + c * stride.
template <class T>
struct LkBlock {
  const T* base;
  idx stride;
};

// The column kernels' sums: the same two-level scheme as LkSum, per column. After every
// kSumBlock rows the partial sums of the input's type go into double totals.
template <class T>
struct LkColumnSums {
  static constexpr idx kSumBlock = LkSum<T>::kSumBlock;
  T part[lk_max_column_block];
  double total[lk_max_column_block];
  double carry[lk_max_column_block];
  idx w = 0;
  // Starts a block of `width` columns. (Reset in place: constructing a fresh object per
  // block and assigning it copied all three arrays, 20 KiB, which cost ~1 us per call
  // for small inputs.)
  void reset(idx width) {
    w = width;
    for (idx j = 0; j < w; ++j) part[j] = 0;
    for (idx j = 0; j < w; ++j) total[j] = 0;
    for (idx j = 0; j < w; ++j) carry[j] = 0;
  }
  // Call after adding row c (0-based) of the block into `part`.
  void row_done(idx c) {
    if ((c + 1) % kSumBlock == 0) flush();
  }
  void flush() {
    if (sizeof(T) == sizeof(float)) {  // as in LkSum: compensation only for double
#pragma omp simd
      for (idx j = 0; j < w; ++j) {
        total[j] += static_cast<double>(part[j]);
        part[j] = 0;
      }
    } else {
#pragma omp simd
      for (idx j = 0; j < w; ++j) {
        lk_kahan_add(total[j], carry[j], static_cast<double>(part[j]));
        part[j] = 0;
      }
    }
  }
};

// Pass 1: the maximum of each column of the block (n x w) into `maxv`. A strided block is
// gathered into `packed` (row stride w) on the way and the returned view points there.
template <class T>
inline LkBlock<T> lk_block_max(const T* xb, idx x_axis_stride, idx x_col_stride, idx n, idx w,
                               T* packed, T* maxv) {
  for (idx j = 0; j < w; ++j) maxv[j] = lk_neg_inf<T>();
  if (x_col_stride == 1) {
    for (idx c = 0; c < n; ++c) {
      const T* xr = xb + c * x_axis_stride;
#pragma omp simd
      for (idx j = 0; j < w; ++j) maxv[j] = xr[j] > maxv[j] ? xr[j] : maxv[j];
    }
    return {xb, x_axis_stride};
  }
  for (idx c = 0; c < n; ++c) {
    const T* xr = xb + c * x_axis_stride;
    T* pr = packed + c * w;
    for (idx j = 0; j < w; ++j) pr[j] = xr[j * x_col_stride];
#pragma omp simd
    for (idx j = 0; j < w; ++j) maxv[j] = pr[j] > maxv[j] ? pr[j] : maxv[j];
  }
  return {packed, w};
}

enum class LkNormalize { softmax, log_softmax };

template <class T, LkNormalize kind>
void lk_normalize_cols(const T* x, idx x_axis_stride, idx x_col_stride, T* out,
                       idx out_axis_stride, idx out_col_stride, idx n, idx cols) {
  T shift[lk_max_column_block];
  T acc[lk_max_column_block];
  T row[lk_max_column_block];
  LkColumnSums<T> sums;
  const idx block = lk_column_block<T>(n);
  LkScratch<T> scratch(x_col_stride == 1 && out_col_stride == 1 ? 0 : n * block);
  for (idx j0 = 0; j0 < cols; j0 += block) {
    const idx w = cols - j0 < block ? cols - j0 : block;
    const LkBlock<T> xb =
        lk_block_max(x + j0 * x_col_stride, x_axis_stride, x_col_stride, n, w, scratch.data,
                     shift);
    T* ob = out + j0 * out_col_stride;
    for (idx j = 0; j < w; ++j) shift[j] = lk_shift_for(shift[j]);
    sums.reset(w);
    T* acc_part = sums.part;
    // Pass 2: sum of exp. Softmax stores the exponentials in `out` (or in the scratch block
    // when out is strided); log_softmax needs only the sum.
    const bool out_direct = out_col_stride == 1;
    T* eb = out_direct ? ob : scratch.data;
    const idx e_stride = out_direct ? out_axis_stride : w;
    for (idx c = 0; c < n; ++c) {
      const T* xr = xb.base + c * xb.stride;
      if (kind == LkNormalize::softmax) {
        T* er = eb + c * e_stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) {
          const T v = lk_exp_nonpositive(xr[j] - shift[j]);
          er[j] = v;
          acc_part[j] += v;
        }
      } else {
#pragma omp simd
        for (idx j = 0; j < w; ++j) acc_part[j] += lk_exp_nonpositive(xr[j] - shift[j]);
      }
      sums.row_done(c);
    }
    sums.flush();
    // Pass 3: normalize, scattering to a strided out through a row buffer.
    if (kind == LkNormalize::softmax) {
      for (idx j = 0; j < w; ++j) acc[j] = static_cast<T>(1.0 / sums.total[j]);
    } else {
      for (idx j = 0; j < w; ++j) acc[j] = lk_log(static_cast<T>(sums.total[j]));
    }
    for (idx c = 0; c < n; ++c) {
      T* orow = ob + c * out_axis_stride;
      T* dst = out_direct ? orow : row;
      if (kind == LkNormalize::softmax) {
        const T* er = eb + c * e_stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) dst[j] = er[j] * acc[j];
      } else {
        const T* xr = xb.base + c * xb.stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) dst[j] = (xr[j] - shift[j]) - acc[j];
      }
      if (!out_direct)
        for (idx j = 0; j < w; ++j) orow[j * out_col_stride] = row[j];
    }
  }
}

template <class T>
void softmax_cols(const T* x, idx x_axis_stride, idx x_col_stride, T* out,
                  idx out_axis_stride, idx out_col_stride, idx n, idx cols) {
  lk_normalize_cols<T, LkNormalize::softmax>(x, x_axis_stride, x_col_stride, out,
                                              out_axis_stride, out_col_stride, n, cols);
}

template <class T>
void log_softmax_cols(const T* x, idx x_axis_stride, idx x_col_stride, T* out,
                      idx out_axis_stride, idx out_col_stride, idx n, idx cols) {
  lk_normalize_cols<T, LkNormalize::log_softmax>(x, x_axis_stride, x_col_stride, out,
                                                  out_axis_stride, out_col_stride, n, cols);
}

template <class T>
void logsumexp_cols(const T* x, idx x_axis_stride, idx x_col_stride, T* out,
                    idx out_col_stride, idx n, idx cols) {
  T maxv[lk_max_column_block];
  T shift[lk_max_column_block];
  LkColumnSums<T> sums;
  const idx block = lk_column_block<T>(n);
  LkScratch<T> scratch(x_col_stride == 1 ? 0 : n * block);
  for (idx j0 = 0; j0 < cols; j0 += block) {
    const idx w = cols - j0 < block ? cols - j0 : block;
    const LkBlock<T> xb = lk_block_max(x + j0 * x_col_stride, x_axis_stride, x_col_stride, n,
                                       w, scratch.data, maxv);
    for (idx j = 0; j < w; ++j) shift[j] = lk_shift_for(maxv[j]);
    sums.reset(w);
    T* acc_part = sums.part;
    for (idx c = 0; c < n; ++c) {
      const T* xr = xb.base + c * xb.stride;
#pragma omp simd
      for (idx j = 0; j < w; ++j) acc_part[j] += lk_exp_nonpositive(xr[j] - shift[j]);
      sums.row_done(c);
    }
    sums.flush();
    for (idx j = 0; j < w; ++j) {
      T result = shift[j] + lk_log(static_cast<T>(sums.total[j]));
      if (maxv[j] == -lk_neg_inf<T>()) {
        // +inf in this column: +inf unless a NaN is there too (rare: rescan the column).
        result = maxv[j];
        for (idx c = 0; c < n; ++c) {
          const T v = xb.base[c * xb.stride + j];
          if (v != v) result = v;
        }
      }
      out[(j0 + j) * out_col_stride] = result;
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
