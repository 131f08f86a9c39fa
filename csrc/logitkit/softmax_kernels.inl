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
// log_softmax and logsumexp take log s as log1p(s - 1), with s - 1 summed without
// cancellation (see LkSum's split mode): the row maximum's term is exactly 1, and in a
// row dominated by one logit s - 1 is the whole information (logsumexp([0, -40]) is
// 4.2e-18, not 0; log_softmax of the dominant class is -4.2e-18, not 0).
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

// log(1 + u) for u >= -1, once per row: Kahan's formula, log(w) * (u / (w - 1)) with
// w = 1 + u rounded (exact where w = 1), within a few ulp with an accurate log; the C
// library's log1p costs about three times its log, which showed on rows of 1000 terms.
// log1p(-1) = -inf, NaN stays NaN.
inline double lk_log1p(double u) {
  const double w = 1.0 + u;
  return w == 1.0 ? u : LOGITKIT_LOG(w) * (u / (w - 1.0));
}

// Rows are processed in blocks of one vector (kLanes elements), written as fixed-length
// inner loops that the compiler turns into single vector instructions, with per-lane
// accumulators. The last partial block is copied into a padded block (padding -inf, whose
// exp is 0), so short rows and tails run the same vector code instead of a scalar loop.
template <class T>
constexpr idx lk_lanes() {
  return LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
}

//
// Elements are stored as S and computed in T = compute_t<S> (half.inl): every read goes
// through lk_ld, every write through lk_st<S>, and lanes are counted in T.
template <class S, class T>
LK_ALWAYS_INLINE void lk_load_padded(T* block, const S* x, idx count) {
  constexpr idx L = lk_lanes<T>();
  for (idx j = 0; j < L; ++j) block[j] = lk_neg_inf<T>();
  for (idx j = 0; j < count; ++j) block[j] = lk_ld(x[j]);
}

// Options of the row kernels (temperature=, where=; kernel_table.hpp's RowOptions) as a
// policy: the plain instance LkPlain compiles to the kernels' code without options, so the
// default path is unchanged. kScale: the exponent's argument x - shift is multiplied by
// `scale` (1/T) after the subtraction, so the shift stays the row's raw maximum and the
// maximum's term is still exactly exp(0) = 1 (split mode needs that); log_softmax is
// (x - shift) * scale - log s and logsumexp shift * scale + log s. kMask: elements whose
// mask byte is 0 are loaded as -inf (they drop out of the max and the sums and get
// p = 0, logp = -inf), read next to the input, no branch. `m` / `next_m`: the masks of this
// row and of the next (n bytes each, contiguous).
template <class T, bool kScale, bool kMask>
struct LkOpt {
  static constexpr bool scaled = kScale;
  static constexpr bool masked = kMask;
  T scale = T(1);
  const std::uint8_t* m = nullptr;
  const std::uint8_t* next_m = nullptr;
  LK_ALWAYS_INLINE T u(T d) const {
    if constexpr (kScale) {
      return d * scale;
    } else {
      return d;
    }
  }
};
template <class T>
using LkPlain = LkOpt<T, false, false>;

// m + i without forming an offset from a null pointer when there is no mask.
template <bool kMask>
LK_ALWAYS_INLINE const std::uint8_t* lk_mask_at(const std::uint8_t* m, idx i) {
  if constexpr (kMask) {
    return m + i;
  } else {
    return nullptr;
  }
}

// v[j] = m[j] != 0 ? v[j] : -inf for one vector. GCC does not vectorize the plain loop
// (bytes against float lanes: it stayed scalar, softmax with where= 4x slower), so the x86
// targets widen the mask bytes and blend with intrinsics; the loop is the fallback.
template <class T>
LK_ALWAYS_INLINE void lk_mask_select(T* __restrict v, const std::uint8_t* __restrict m) {
  constexpr idx L = lk_lanes<T>();
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  if constexpr (L == 16 && sizeof(T) == 4) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
    const __mmask16 k = _mm_test_epi8_mask(b, b);
    _mm512_storeu_ps(v, _mm512_mask_mov_ps(_mm512_set1_ps(lk_neg_inf<float>()), k,
                                           _mm512_loadu_ps(v)));
    return;
  }
  if constexpr (L == 8 && sizeof(T) == 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
    const __mmask8 k = static_cast<__mmask8>(_mm_test_epi8_mask(b, b));
    _mm512_storeu_pd(v, _mm512_mask_mov_pd(_mm512_set1_pd(lk_neg_inf<double>()), k,
                                           _mm512_loadu_pd(v)));
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (L == 8 && sizeof(T) == 4) {
    const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)));
    const __m256 off = _mm256_castsi256_ps(_mm256_cmpeq_epi32(w, _mm256_setzero_si256()));
    _mm256_storeu_ps(v, _mm256_blendv_ps(_mm256_loadu_ps(v),
                                         _mm256_set1_ps(lk_neg_inf<float>()), off));
    return;
  }
  if constexpr (L == 4 && sizeof(T) == 8) {
    std::int32_t word;
    LOGITKIT_MEMCPY(&word, m, 4);
    const __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(word));
    const __m256d off = _mm256_castsi256_pd(_mm256_cmpeq_epi64(w, _mm256_setzero_si256()));
    _mm256_storeu_pd(v, _mm256_blendv_pd(_mm256_loadu_pd(v),
                                         _mm256_set1_pd(lk_neg_inf<double>()), off));
    return;
  }
#endif
#if defined(__SSE2__) && !defined(__AVX__)
  if constexpr (L == 4 && sizeof(T) == 4) {
    std::int32_t word;
    LOGITKIT_MEMCPY(&word, m, 4);
    const __m128i z = _mm_setzero_si128();
    const __m128i w = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(word), z), z);
    const __m128 off = _mm_castsi128_ps(_mm_cmpeq_epi32(w, z));
    const __m128 x = _mm_loadu_ps(v);
    _mm_storeu_ps(v, _mm_or_ps(_mm_andnot_ps(off, x),
                               _mm_and_ps(off, _mm_set1_ps(lk_neg_inf<float>()))));
    return;
  }
#endif
  for (idx j = 0; j < L; ++j) v[j] = m[j] != 0 ? v[j] : lk_neg_inf<T>();
}

// Keeps a loaded vector in a register: stops GCC from folding the load into the blend as a
// masked (fault-suppressing) memory operand, which waits for the mask before it can load.
#if defined(__GNUC__)
#define LK_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define LK_IN_REGISTER(v) ((void)0)
#endif

// One vector of x (lk_load_vector), masked elements -inf. float and double rows on the
// AVX-512 targets load and select in registers (a masked move), without the round trip
// through v of lk_load_vector then lk_mask_select, which measured 1.7x the plain
// softmax there. A plain load then a blend in registers, not _mm512_mask_loadu_ps: GCC
// treats that builtin as a call reading any memory, so the loops that used it kept their
// sums, the next row's max accumulator and the term vector on the stack (stored and
// reloaded every vector); and without LK_IN_REGISTER GCC folds load + blend back into a
// masked memory operand (vblendmps (mem){k}), whose load of the next row (from DRAM in the
// pipelined max) waits for the mask: 2.2x the plain logsumexp, 1.2x with the barrier.
template <bool kMask, class S, class T>
LK_ALWAYS_INLINE void lk_load_opt(T* __restrict v, const S* __restrict x,
                                  const std::uint8_t* __restrict m) {
  if constexpr (kMask) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    constexpr idx L = lk_lanes<T>();
    if constexpr (std::is_same<S, float>::value && L == 16) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
      __m512 xr = _mm512_loadu_ps(x);
      LK_IN_REGISTER(xr);
      _mm512_storeu_ps(v, _mm512_mask_mov_ps(_mm512_set1_ps(lk_neg_inf<float>()),
                                             _mm_test_epi8_mask(b, b), xr));
      return;
    }
    if constexpr (std::is_same<S, double>::value && L == 8) {
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
      __m512d xr = _mm512_loadu_pd(x);
      LK_IN_REGISTER(xr);
      _mm512_storeu_pd(v, _mm512_mask_mov_pd(_mm512_set1_pd(lk_neg_inf<double>()),
                                             static_cast<__mmask8>(_mm_test_epi8_mask(b, b)),
                                             xr));
      return;
    }
#endif
    lk_load_vector(v, x);
    lk_mask_select(v, m);
  } else {
    lk_load_vector(v, x);
  }
}

template <bool kMask, class S, class T>
LK_ALWAYS_INLINE void lk_load_padded_opt(T* block, const S* x, const std::uint8_t* m,
                                         idx count) {
  lk_load_padded(block, x, count);
  if constexpr (kMask) {
    for (idx j = 0; j < count; ++j) block[j] = m[j] != 0 ? block[j] : lk_neg_inf<T>();
  }
}

// Whether a mask row has an included element (rare path: rows whose maximum is -inf).
inline bool lk_mask_any(const std::uint8_t* m, idx n) {
  for (idx i = 0; i < n; ++i)
    if (m[i]) return true;
  return false;
}

// Horizontal reductions of a lane array (one vector): as simd reductions, the compiler
// emits its shuffle tree and keeps the array in a register.
template <class T>
LK_ALWAYS_INLINE T lk_reduce_max(const T* acc) {
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

template <bool kMask = false, class S, class T = compute_t<S>>
inline T lk_row_max(const S* __restrict x, idx n, const std::uint8_t* m = nullptr) {
  constexpr idx L = lk_lanes<T>();
  T acc[L];
  for (idx j = 0; j < L; ++j) acc[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
    T xv[L];
    lk_load_opt<kMask>(xv, x + i, lk_mask_at<kMask>(m, i));
#pragma omp simd
    for (idx j = 0; j < L; ++j) acc[j] = xv[j] > acc[j] ? xv[j] : acc[j];
  }
  if (i < n) {
    T block[L];
    lk_load_padded_opt<kMask>(block, x + i, lk_mask_at<kMask>(m, i), n - i);
#pragma omp simd
    for (idx j = 0; j < L; ++j) acc[j] = block[j] > acc[j] ? block[j] : acc[j];
  }
  return lk_reduce_max(acc);
}

// A row's maximum with the lane that holds it: the lane (element index mod the vector
// length) of the only lane accumulator that reached the maximum, or -1 when several lanes
// did (the maximum occurs twice, so s >= 2) or none did (NaN).
template <class T>
struct LkMax {
  T value;
  idx lane;
};

// (Variable-index accesses go to a copy: one on the accumulators themselves would keep them
// in memory, not registers, throughout the loop that fills them.)
template <class T>
LK_ALWAYS_INLINE LkMax<T> lk_reduce_max_lane(const T* acc) {
  constexpr idx L = lk_lanes<T>();
  const T m = lk_reduce_max(acc);
  T copy[L];
#pragma omp simd
  for (idx j = 0; j < L; ++j) copy[j] = acc[j];
  idx lane = -1;
  idx count = 0;
#pragma omp simd reduction(+ : count) reduction(max : lane)
  for (idx j = 0; j < L; ++j) {
    const bool at_max = copy[j] == m;
    count += at_max ? 1 : 0;
    lane = at_max && j > lane ? j : lane;
  }
  return {m, count == 1 ? lane : idx(-1)};
}

template <bool kMask = false, class S, class T = compute_t<S>>
inline LkMax<T> lk_row_max_lane(const S* __restrict x, idx n, const std::uint8_t* m = nullptr) {
  constexpr idx L = lk_lanes<T>();
  T acc[L];
  for (idx j = 0; j < L; ++j) acc[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
    T xv[L];
    lk_load_opt<kMask>(xv, x + i, lk_mask_at<kMask>(m, i));
#pragma omp simd
    for (idx j = 0; j < L; ++j) acc[j] = xv[j] > acc[j] ? xv[j] : acc[j];
  }
  if (i < n) {
    T block[L];
    lk_load_padded_opt<kMask>(block, x + i, lk_mask_at<kMask>(m, i), n - i);
#pragma omp simd
    for (idx j = 0; j < L; ++j) acc[j] = block[j] > acc[j] ? block[j] : acc[j];
  }
  return lk_reduce_max_lane(acc);
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

// Splits a term v (in [0, 1]) exactly into its nearest integer k (0 or 1; returned) and
// v - k (left in v): the shifter 1.5 * 2^(mantissa bits) rounds in plain arithmetic. For
// v in (0.5, 1), v - k is exact by Sterbenz.
template <class T>
inline T lk_split_integer(T& v) {
  constexpr T shifter = sizeof(T) == sizeof(float) ? T(12582912.0f) : T(6755399441055744.0);
  const T k = (v + shifter) - shifter;
  v -= k;
  return k;
}

// Split mode (kSplit), for log_softmax and logsumexp, which take log s as log1p(s - 1):
// s - 1 must come out without cancellation. The row maximum's term is exactly 1
// (exp(0) = 1), and where the other terms are tiny, adding them to an accumulator that
// holds the 1 rounds them away (logsumexp([0, -40]) would be 0, not 4.2e-18). So the terms
// of the block of vectors (kSumBlock = 4) that holds the maximum are summed apart, in the
// one lane that holds it (LkMax::lane): each term v is split into its nearest integer k and
// v - k (exact), the k go into `ones`, the v - k into the lane's sum as usual; then
// s - 1 = (ones - 1) + (the sums), and no 1 ever meets a tail term.
//
// Finding that block costs little per element: the maximum's lane is known from the max
// pass (several lanes holding it mean s >= 2: no split is needed, lane -1), so at each
// flush (every 4 vectors) four scalar loads of the row (in cache) compare that lane's
// elements with the maximum, and only the block that holds it re-sums that lane's four
// terms (kept in `saved`, one vector store per vector) split. Every other block is summed
// plainly: a 1 there (a second maximum, or a term within rounding of it) means
// s - 1 >= 1, where rounding against it costs nothing relative. Measured against plain
// sums on in-cache rows (benchmarks in the commit message): +0-12% for rows of 1000 and
// more, where splitting every term in the exp loop cost 15-55% (three or four more
// vector operations per vector).
//
// Double sums in split mode flush every 4 vectors into plain double `mid` sums and those
// into the compensated totals every kMidBlocks flushes, as often as plain mode does.

// The rare path of LkSum's split mode: whether the four terms of the maximum's lane in a
// block (0 for missing ones) hold a 1, and if so the sums of their nearest integers (k_sum)
// and of the rest. (Inline, with values rather than pointers: a call or a pointer there made
// GCC keep the exp loop's sums in memory rather than registers, +30%.)
template <class T>
struct LkLaneSplit {
  bool found;
  T rest;
  T k_sum;
};

template <class T>
LK_ALWAYS_INLINE LkLaneSplit<T> lk_split_lane(T t0, T t1, T t2, T t3) {
  const T terms[4] = {t0, t1, t2, t3};
  bool has_one = false;
  for (idx b = 0; b < 4; ++b) has_one |= terms[b] == T(1);
  if (!has_one) return {false, T(0), T(0)};
  T r = 0;
  T k = 0;
  for (idx b = 0; b < 4; ++b) {
    T v = terms[b];
    k += lk_split_integer(v);
    r += v;
  }
  return {true, r, k};
}

// R: the storage type of the row that split mode checks (see add()).
template <class T, bool kSplit = false, class R = T>
struct LkSum {
  static constexpr idx L = lk_lanes<T>();
  static constexpr idx kSumBlock = kSplit || sizeof(T) == sizeof(float) ? 4 : 64;
  static constexpr idx kMidBlocks = kSplit && sizeof(T) != sizeof(float) ? 16 : 1;
  double total[L];
  double carry[L];  // Kahan compensation of total: double rows may have 2^20+ terms
  T part[L];
  T mid[kMidBlocks > 1 ? L : 1];  // double split mode: sums of kMidBlocks blocks
  // Split mode: `saved` (the caller's, kSumBlock x L) receives the current block's terms;
  // passed to add() and flush() rather than kept here, which would keep these sums in
  // memory rather than registers in the exp loop.
  double ones = 0;  // split mode: sum of the split terms' integers
  idx lane = -1;    // split mode: the maximum's lane; -1 once split
  idx block_start = 0;  // split mode: index of the block's first element
  idx count = 0;
  idx mids = 0;
  explicit LkSum(idx max_lane = -1) : lane(kSplit ? max_lane : idx(-1)) {
    for (idx j = 0; j < L; ++j) total[j] = 0;
    for (idx j = 0; j < L; ++j) carry[j] = 0;
    for (idx j = 0; j < L; ++j) part[j] = 0;
    if (kMidBlocks > 1)
      for (idx j = 0; j < L; ++j) mid[j] = 0;
  }
  // Adds one vector of terms.
  // Split mode: `saved` (kSumBlock x L) receives the block's terms; the block that holds
  // the maximum is recognized by row[k] == target in the maximum's lane (row: the input, or
  // in place the stored x - shift with target 0; n valid elements), i: this vector's index.
  LK_ALWAYS_INLINE void add(const T* v, T* __restrict saved = nullptr,
                            const R* row = nullptr, idx n = 0, T target = 0, idx i = 0) {
    if (kSplit) {
      if (count == 0) block_start = i;
      T* dst = saved + count * L;
#pragma omp simd
      for (idx j = 0; j < L; ++j) dst[j] = v[j];
    }
#pragma omp simd
    for (idx j = 0; j < L; ++j) part[j] += v[j];
    if (++count == kSumBlock) flush(saved, row, n, target);
  }
  LK_ALWAYS_INLINE void split_lane(T t0, T t1, T t2, T t3) {
    const LkLaneSplit<T> split = lk_split_lane(t0, t1, t2, t3);
    if (!split.found) return;
    ones += static_cast<double>(split.k_sum);
    // part[lane] = rest through a mask: a variable index on part would keep it in memory,
    // not registers, in the exp loop.
    T is_lane[L];
    for (idx j = 0; j < L; ++j) is_lane[j] = 0;
    is_lane[lane] = 1;
    const T rest = split.rest;
#pragma omp simd
    for (idx j = 0; j < L; ++j) part[j] = is_lane[j] != T(0) ? rest : part[j];
    lane = -1;
  }
  LK_ALWAYS_INLINE void flush(const T* __restrict saved = nullptr, const R* row = nullptr,
                              idx n = 0, T target = 0) {
    if (kSplit && lane >= 0 && count > 0) {
      // Split mode (see above): does the maximum's lane of this block hold the maximum?
      // (Checked on the row, in cache, rather than on `saved`, whose lanes read back right
      // after the vector stores stall on store forwarding; and not on part[lane], a
      // variable index that would keep part in memory rather than registers.)
      static_assert(!kSplit || kSumBlock == 4, "lk_split_lane takes four terms");
      const R* r = row + block_start + lane;
      bool hit;
      if (count == 4 && block_start + 4 * L <= n) {
        hit = (lk_ld(r[0]) == target) | (lk_ld(r[L]) == target) |
              (lk_ld(r[2 * L]) == target) | (lk_ld(r[3 * L]) == target);
      } else {
        hit = false;
        for (idx b = 0; b < count; ++b)
          hit |= block_start + b * L + lane < n && lk_ld(r[b * L]) == target;
      }
      if (LK_UNLIKELY(hit)) {
        const T* terms = saved + lane;
        split_lane(terms[0], count > 1 ? terms[L] : T(0), count > 2 ? terms[2 * L] : T(0),
                   count > 3 ? terms[3 * L] : T(0));
      }
    }
    if (sizeof(T) == sizeof(float)) {
      // float partial sums into double totals: the totals' own rounding (2^-53 per
      // addition) is negligible, no compensation needed.
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        total[j] += static_cast<double>(part[j]);
        part[j] = 0;
      }
    } else if (kMidBlocks > 1) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        mid[j] += part[j];
        part[j] = 0;
      }
      if (++mids == kMidBlocks) flush_mid();
    } else {
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        lk_kahan_add(total[j], carry[j], static_cast<double>(part[j]));
        part[j] = 0;
      }
    }
    count = 0;
  }
  LK_ALWAYS_INLINE void flush_mid() {
    if (kMidBlocks > 1) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        lk_kahan_add(total[j], carry[j], static_cast<double>(mid[j]));
        mid[j] = 0;
      }
    }
    mids = 0;
  }
  // (Always inlined, as add() and flush(): a call that takes the sums' address keeps them
  // in memory rather than registers through the whole exp loop; the masked kernels, larger,
  // were not inlined and ran at twice the time, latency-bound on the stored sums.)
  LK_ALWAYS_INLINE double total_sum(const T* saved = nullptr, const R* row = nullptr, idx n = 0,
                                    T target = 0) {
    flush(saved, row, n, target);
    flush_mid();
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (idx j = 0; j < L; ++j) s += total[j];
    return s;
  }
  // The sum of the terms.
  LK_ALWAYS_INLINE T result() { return static_cast<T>(total_sum()); }
  // Split mode: the sum of the terms minus 1, (ones - 1) + the rest; -1 for a row of -inf
  // (no terms), NaN for a row with NaN. Without a split (the maximum in two lanes, so
  // s >= 2, or a row of -inf or NaN) it is plainly the sum minus 1.
  LK_ALWAYS_INLINE double result_minus_one(const T* saved, const R* row, idx n, T target) {
    const double rest = total_sum(saved, row, n, target);
    return ones > 0 ? (ones - 1.0) + rest : rest - 1.0;
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
//
// Returns the sum s, or with kSplit s - 1 as a double (LkSum's split mode).
// In split mode, `lane` is the lane of this row's maximum (LkMax) and *next_lane receives
// the next row's (with kNext).
// e's element type E is S, or (16-bit S) the compute type, to keep the exponentials
// unrounded.
// With options (Opt, see LkOpt): the argument of exp and the stored x - shift are scaled,
// masked elements load as -inf (this row's mask opt.m, the next row's opt.next_m).
template <bool kNext, bool kStoreShifted = false, bool kSplit = false, class S, class E,
          class T = compute_t<S>, class Opt = LkPlain<T>>
inline auto lk_exp_sum_store(const S* x, E* e, idx n, T shift, const S* next, T* next_max,
                             idx lane = -1, idx* next_lane = nullptr, const Opt& opt = Opt()) {
  constexpr bool kMask = Opt::masked;
  constexpr idx L = lk_lanes<T>();
  T saved[kSplit ? LkSum<T, kSplit, S>::kSumBlock * L : 1];
  LkSum<T, kSplit, S> sum(lane);
  // Split mode: where LkSum recognizes the maximum (in place, x is overwritten by x - shift,
  // which is 0 exactly where x is the maximum, also once rounded to a 16-bit S: the
  // difference of two such values is never below the smallest subnormal).
  const bool check_stored =
      kStoreShifted && static_cast<const void*>(e) == static_cast<const void*>(x);
  const S* check_row = check_stored ? reinterpret_cast<const S*>(e) : x;
  const T check_target = check_stored ? T(0) : shift;
  T v[L];
  T macc[L];
  for (idx j = 0; j < L; ++j) macc[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
    T xv[L];
    lk_load_opt<kMask>(xv, x + i, lk_mask_at<kMask>(opt.m, i));
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = lk_exp_shifted<S>(opt.u(xv[j] - shift));
    if (e) {
      T ev[L];
#pragma omp simd
      for (idx j = 0; j < L; ++j) ev[j] = kStoreShifted ? opt.u(xv[j] - shift) : v[j];
      lk_store_vector(e + i, ev);
    }
    sum.add(v, saved, check_row, n, check_target, i);
    if (kNext) {
      T nv[L];
      lk_load_opt<kMask>(nv, next + i, lk_mask_at<kMask>(opt.next_m, i));
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = nv[j] > macc[j] ? nv[j] : macc[j];
    }
  }
  if (i < n) {
    lk_load_padded_opt<kMask>(v, x + i, lk_mask_at<kMask>(opt.m, i), n - i);
    if (e && kStoreShifted)
      for (idx j = 0; j < n - i; ++j) e[i + j] = lk_st<E>(opt.u(v[j] - shift));
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = lk_exp_shifted<S>(opt.u(v[j] - shift));
    if (e && !kStoreShifted)
      for (idx j = 0; j < n - i; ++j) e[i + j] = lk_st<E>(v[j]);
    sum.add(v, saved, check_row, n, check_target, i);
    if (kNext) {
      T block[L];
      lk_load_padded_opt<kMask>(block, next + i, lk_mask_at<kMask>(opt.next_m, i), n - i);
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = block[j] > macc[j] ? block[j] : macc[j];
    }
  }
  if (kNext) {
    if (next_lane) {
      const LkMax<T> mx = lk_reduce_max_lane(macc);
      *next_max = mx.value;
      *next_lane = mx.lane;
    } else {
      *next_max = lk_reduce_max(macc);
    }
  }
  if constexpr (kSplit) {
    return sum.result_minus_one(saved, check_row, n, check_target);
  } else {
    return sum.result();
  }
}

// Runs a row kernel's per-row work over `rows` rows with the max of each row computed in
// the previous row's exp pass (see lk_exp_sum_store). row_work(r, m, next, next_max)
// handles row r, whose max is m; it must compute next's max into *next_max (next is null
// for the last row).
template <class S, class RowWork>
inline void lk_pipelined_rows(const S* x, idx x_row_stride, idx rows, idx n, RowWork row_work) {
  using T = compute_t<S>;
  if (rows <= 0) return;
  T m = lk_row_max(x, n);
  for (idx r = 0; r < rows; ++r) {
    const S* next = r + 1 < rows ? x + (r + 1) * x_row_stride : nullptr;
    T next_max = 0;
    row_work(r, m, next, &next_max);
    m = next_max;
  }
}

// exp sum of row xr, with the next row's max when there is a next row.
template <bool kStoreShifted = false, class S, class E, class T = compute_t<S>,
          class Opt = LkPlain<T>>
inline T lk_exp_sum_row(const S* xr, E* e, idx n, T shift, const S* next, T* next_max,
                        const Opt& opt = Opt()) {
  return next ? lk_exp_sum_store<true, kStoreShifted>(xr, e, n, shift, next, next_max, -1,
                                                      nullptr, opt)
              : lk_exp_sum_store<false, kStoreShifted>(xr, e, n, shift, next, next_max, -1,
                                                       nullptr, opt);
}

// lk_pipelined_rows for split-mode sums: row_work(r, m, next, next_max) gets and produces
// the maxima with their lanes (LkMax).
template <class S, class RowWork>
inline void lk_pipelined_rows_lane(const S* x, idx x_row_stride, idx rows, idx n,
                                   RowWork row_work) {
  using T = compute_t<S>;
  if (rows <= 0) return;
  LkMax<T> m = lk_row_max_lane(x, n);
  for (idx r = 0; r < rows; ++r) {
    const S* next = r + 1 < rows ? x + (r + 1) * x_row_stride : nullptr;
    LkMax<T> next_max{0, -1};
    row_work(r, m, next, &next_max);
    m = next_max;
  }
}

// The sum of exp(x - shift) over row xr minus 1, as a double, in split mode (see LkSum),
// with the next row's max and its lane when there is a next row.
template <bool kStoreShifted = false, class S, class T = compute_t<S>, class Opt = LkPlain<T>>
inline double lk_exp_sum_minus_one_row(const S* xr, S* e, idx n, T shift, idx lane,
                                       const S* next, LkMax<T>* next_max,
                                       const Opt& opt = Opt()) {
  return next ? lk_exp_sum_store<true, kStoreShifted, true>(xr, e, n, shift, next,
                                                            &next_max->value, lane,
                                                            &next_max->lane, opt)
              : lk_exp_sum_store<false, kStoreShifted, true>(xr, e, n, shift, next,
                                                             &next_max->value, lane,
                                                             &next_max->lane, opt);
}

// The row pipelines with options: row_work(r, m, next, next_max, opt) gets the row's
// options (its mask and the next row's); `base` has the first row's mask, rows of masks
// mask_row_stride apart.
template <class S, class Opt, class RowWork>
inline void lk_pipelined_rows_opt(const S* x, idx x_row_stride, idx rows, idx n, const Opt& base,
                                  idx mask_row_stride, RowWork row_work) {
  using T = compute_t<S>;
  if (rows <= 0) return;
  T m = lk_row_max<Opt::masked>(x, n, base.m);
  for (idx r = 0; r < rows; ++r) {
    const S* next = r + 1 < rows ? x + (r + 1) * x_row_stride : nullptr;
    Opt o = base;
    if constexpr (Opt::masked) {
      o.m = base.m + r * mask_row_stride;
      o.next_m = next ? o.m + mask_row_stride : nullptr;
    }
    T next_max = 0;
    row_work(r, m, next, &next_max, o);
    m = next_max;
  }
}

template <class S, class Opt, class RowWork>
inline void lk_pipelined_rows_lane_opt(const S* x, idx x_row_stride, idx rows, idx n,
                                       const Opt& base, idx mask_row_stride, RowWork row_work) {
  using T = compute_t<S>;
  if (rows <= 0) return;
  LkMax<T> m = lk_row_max_lane<Opt::masked>(x, n, base.m);
  for (idx r = 0; r < rows; ++r) {
    const S* next = r + 1 < rows ? x + (r + 1) * x_row_stride : nullptr;
    Opt o = base;
    if constexpr (Opt::masked) {
      o.m = base.m + r * mask_row_stride;
      o.next_m = next ? o.m + mask_row_stride : nullptr;
    }
    LkMax<T> next_max{0, -1};
    row_work(r, m, next, &next_max, o);
    m = next_max;
  }
}

// Left-out elements of a row that is not a distribution (no finite maximum or sum:
// included -inf only, +inf or NaN) are set to `fill` (0 for softmax, -inf for
// log_softmax), as JAX does, rather than the row's NaN. Rare path, after the row.
template <class Opt, class S, class T>
LK_ALWAYS_INLINE void lk_fix_masked(const Opt& o, S* out, idx n, T max, double sum, T fill) {
  if constexpr (Opt::masked) {
    if (LK_UNLIKELY(!(max - max == T(0) && sum - sum == 0.0))) {
      lk_stream_fence();  // (after streaming stores to the same row)
      for (idx i = 0; i < n; ++i)
        if (o.m[i] == 0) out[i] = lk_st<S>(fill);
    }
  }
}

// A row whose maximum is -inf with a mask that excludes all of it: fully masked (JAX's
// rules: softmax 0, log_softmax -inf, logsumexp -inf), rather than a row of -inf (NaN).
template <class Opt, class T>
LK_ALWAYS_INLINE bool lk_fully_masked(const Opt& o, T max, idx n) {
  if constexpr (Opt::masked) {
    return max == lk_neg_inf<T>() && !lk_mask_any(o.m, n);
  } else {
    return false;
  }
}

// log s from s - 1 (split mode), in T: log1p(-1) = -inf for a row of -inf.
template <class T>
inline T lk_log_sum(double s_minus_one) {
  return static_cast<T>(lk_log1p(s_minus_one));
}

template <class S>
inline bool lk_row_has_nan(const S* x, idx n) {
  for (idx i = 0; i < n; ++i)
    if (lk_ld(x[i]) != lk_ld(x[i])) return true;
  return false;
}

// Memory the kernels need on every call is kept per thread instead of allocated per call:
// a 32 x 10 softmax spent a sixth of its time in operator new and delete for its column
// state and scratch block. (thread_local in this translation unit: nothing is shared
// between targets' translation units.)
//
// The state of one block of columns (`Work`, tens of KiB: too much for small thread
// stacks, musl's default is 128 KiB): one per kernel and thread, allocated on first use.
// Each kernel has its own Work type and never runs inside itself, so a thread's Work is
// never in use twice at once.
template <class Work>
Work& lk_thread_work() {
  static thread_local std::unique_ptr<Work> work;
  if (!work) work.reset(new Work);
  return *work;
}

// A thread's buffer for small scratch blocks, lent to one LkScratch at a time.
struct LkThreadScratch {
  static constexpr std::size_t kBytes = 16 * 1024;
  alignas(64) unsigned char bytes[kBytes];
  bool lent = false;
};

// Scratch memory for one call: the thread's LkThreadScratch when it is free and large
// enough (the short rows of small calls), else plain operator new.
template <class T>
struct LkScratch {
  T* data = nullptr;
  LkThreadScratch* borrowed = nullptr;
  explicit LkScratch(idx count) {
    if (count <= 0) return;
    if (static_cast<std::size_t>(count) * sizeof(T) <= LkThreadScratch::kBytes) {
      LkThreadScratch& buffer = lk_thread_work<LkThreadScratch>();
      if (!buffer.lent) {
        buffer.lent = true;
        borrowed = &buffer;
        data = reinterpret_cast<T*>(buffer.bytes);
        return;
      }
    }
    data = static_cast<T*>(::operator new(count * sizeof(T)));
  }
  ~LkScratch() {
    if (borrowed)
      borrowed->lent = false;
    else
      ::operator delete(data);
  }
  LkScratch(const LkScratch&) = delete;
  LkScratch& operator=(const LkScratch&) = delete;
};

// 16-bit rows of up to kNarrowKeep elements (16 KiB of floats, half of L1) keep their
// exponentials (softmax, cross-entropy) in a row of floats rather than in the output:
// one rounding instead of two, and no conversions between the passes.
constexpr idx kNarrowKeep = 4096;

// For a 16-bit S, softmax rounds twice (the exponential stored in `out`, then the
// normalized value): exp(x - shift) * (1 + d1) / s * (1 + d2) with |d1|, |d2| <= 2^-11
// (float16) is within 1 ulp of the product, and a subnormal result loses at most half a
// step more; log_softmax stores x - shift, rounded, then subtracts log s >= 0, which only
// grows the magnitude: again within 1 ulp.
//
// kStream (float and double, outputs larger than the cache; see lk_stream_vector): the
// exponentials go to the thread's LkStreamRow instead of `out`, and the normalized values
// are streamed to `out` from there, so `out` is written once, without being read.
// With options (Opt, see LkOpt; `base` holds the first row's mask, mask rows are
// mask_row_stride apart), a fully masked row comes out as 0 (inv = 0: its exponentials are
// all 0).
template <class S, bool kStream, class Opt = LkPlain<compute_t<S>>, class T = compute_t<S>>
void softmax_rows_for(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                      idx n, const Opt& base = Opt(), idx mask_row_stride = 0) {
  constexpr bool kNarrow = sizeof(S) < sizeof(T);
  LkScratch<T> exp_row(kNarrow && n <= kNarrowKeep ? n : 0);
  T* stream_row = nullptr;
  if constexpr (kStream && !kNarrow) {
    if (n <= lk_stream_keep<T>()) stream_row = lk_thread_work<LkStreamRow<T>>().get();
  }
  lk_pipelined_rows_opt(x, x_row_stride, rows, n, base, mask_row_stride,
                        [&](idx r, T m, const S* next, T* next_max, const Opt& o) {
    const S* xr = x + r * x_row_stride;
    S* orow = out + r * out_row_stride;
    T sum = 0;
    auto inverse = [&](T s) {
      sum = s;
      return lk_fully_masked(o, m, n) ? T(0) : T(1) / s;
    };
    if constexpr (kStream && !kNarrow) {
      if (stream_row) {
        T* e = stream_row;
        const T inv = inverse(lk_exp_sum_row(xr, e, n, lk_shift_for(m), next, next_max, o));
        lk_stream_row2(orow, e, static_cast<const T*>(nullptr), n,
                       [inv](T v, T, idx) { return v * inv; });
        lk_fix_masked(o, orow, n, m, double(sum), T(0));
        return;
      }
    }
    if (kNarrow && exp_row.data) {
      T* e = exp_row.data;
      const T inv = inverse(lk_exp_sum_row(xr, e, n, lk_shift_for(m), next, next_max, o));
      lk_write_row(orow, e, static_cast<const S*>(nullptr), n,
                   [inv](T v, T, idx) { return v * inv; });
      lk_fix_masked(o, orow, n, m, double(sum), T(0));
      return;
    }
    const T inv = inverse(lk_exp_sum_row(xr, orow, n, lk_shift_for(m), next, next_max, o));
    lk_map_row(orow, orow, n, [inv](T v) { return v * inv; });
    lk_fix_masked(o, orow, n, m, double(sum), T(0));
  });
  if constexpr (kStream) lk_stream_fence();
}

template <class S>
void softmax_rows(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows, idx n) {
  softmax_rows_for<S, false>(x, x_row_stride, out, out_row_stride, rows, n);
}

template <class S>
void softmax_rows_stream(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                         idx n) {
  softmax_rows_for<S, true>(x, x_row_stride, out, out_row_stride, rows, n);
}

// kStream (float and double): the sum pass stores nothing, and the output is streamed from
// x - shift - log s taken from x again (read from cache: the row was just read).
// With options: (x - shift) * scale - log s, masked elements -inf (their x loads as -inf;
// where x is read again, through the mask); a fully masked row's log s counts as 0, so
// that it is -inf throughout (not -inf - -inf).
template <class S, bool kStream, class Opt = LkPlain<compute_t<S>>, class T = compute_t<S>>
void log_softmax_rows_for(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                          idx n, const Opt& base = Opt(), idx mask_row_stride = 0) {
  constexpr bool kMask = Opt::masked;
  lk_pipelined_rows_lane_opt(x, x_row_stride, rows, n, base, mask_row_stride,
                             [&](idx r, LkMax<T> m, const S* next, LkMax<T>* next_max,
                                 const Opt& o) {
    const S* xr = x + r * x_row_stride;
    S* orow = out + r * out_row_stride;
    const T shift = lk_shift_for(m.value);
    double sum = 0;
    auto log_of = [&](double s_minus_one) {
      sum = s_minus_one;
      return lk_fully_masked(o, m.value, n) ? T(0) : lk_log_sum<T>(s_minus_one);
    };
    const std::uint8_t* mr = o.m;
    if constexpr (kStream && sizeof(S) == sizeof(T)) {
      const T log_sum = log_of(lk_exp_sum_minus_one_row<false>(
          xr, static_cast<S*>(nullptr), n, shift, m.lane, next, next_max, o));
      lk_stream_row2(orow, xr, static_cast<const T*>(nullptr), n,
                     [shift, log_sum, o, mr](T v, T, idx i) {
                       const T y = o.u(v - shift) - log_sum;
                       if constexpr (kMask) {
                         return mr[i] != 0 ? y : lk_neg_inf<T>();
                       } else {
                         return y;
                       }
                     });
      return;
    }
    // Pass 2 leaves x - shift in out; pass 3 subtracts log s. ((x - shift) - log_sum, not
    // x - (shift + log_sum): with shift = 1e30 the latter would round log_sum away.)
    // A 16-bit row takes x - shift from x again instead (no conversions in between, one
    // rounding); in place, each element is read before it is written.
    if constexpr (sizeof(S) < sizeof(T)) {
      const T log_sum = log_of(lk_exp_sum_minus_one_row<false>(
          xr, static_cast<S*>(nullptr), n, shift, m.lane, next, next_max, o));
      if constexpr (kMask) {
        lk_map_rows2(xr, static_cast<const S*>(nullptr), orow, n,
                     [shift, log_sum, o, mr](T v, T, idx i) {
                       return mr[i] != 0 ? o.u(v - shift) - log_sum : lk_neg_inf<T>();
                     });
      } else {
        lk_map_row(xr, orow, n, [shift, log_sum, o](T v) { return o.u(v - shift) - log_sum; });
      }
      return;
    }
    const T log_sum = log_of(
        lk_exp_sum_minus_one_row<true>(xr, orow, n, shift, m.lane, next, next_max, o));
    lk_map_row(orow, orow, n, [log_sum](T v) { return v - log_sum; });
    lk_fix_masked(o, orow, n, m.value, sum, lk_neg_inf<T>());
  });
  if constexpr (kStream) lk_stream_fence();
}

template <class S>
void log_softmax_rows(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                      idx n) {
  log_softmax_rows_for<S, false>(x, x_row_stride, out, out_row_stride, rows, n);
}

template <class S>
void log_softmax_rows_stream(const S* x, idx x_row_stride, S* out, idx out_row_stride,
                             idx rows, idx n) {
  log_softmax_rows_for<S, true>(x, x_row_stride, out, out_row_stride, rows, n);
}

// Whether a row holds a NaN among its included elements (rare path).
template <class Opt, class S>
inline bool lk_row_has_nan_opt(const Opt& o, const S* x, idx n) {
  if constexpr (Opt::masked) {
    for (idx i = 0; i < n; ++i)
      if (o.m[i] != 0 && lk_ld(x[i]) != lk_ld(x[i])) return true;
    return false;
  } else {
    return lk_row_has_nan(x, n);
  }
}

template <class S, class T, class Opt = LkPlain<T>>
inline T lk_logsumexp_finish(T m, T shift, double s_minus_one, const S* xr, idx n,
                             const Opt& o = Opt()) {
  if (m == -lk_neg_inf<T>()) return lk_row_has_nan_opt(o, xr, n) ? T(s_minus_one) : m;  // NaN here
  return o.u(shift) + lk_log_sum<T>(s_minus_one);
}

// With options: logsumexp(x * scale) = shift * scale + log s; masked elements left out (a
// fully masked row: log 0 = -inf).
template <class S, class Opt = LkPlain<compute_t<S>>, class T = compute_t<S>>
void logsumexp_rows_for(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows, idx n,
                        const Opt& base = Opt(), idx mask_row_stride = 0) {
  if (n == 0) {
    for (idx r = 0; r < rows; ++r) out[r * out_stride] = lk_st<S>(lk_neg_inf<T>());
    return;
  }
  lk_pipelined_rows_lane_opt(x, x_row_stride, rows, n, base, mask_row_stride,
                             [&](idx r, LkMax<T> m, const S* next, LkMax<T>* next_max,
                                 const Opt& o) {
    const S* xr = x + r * x_row_stride;
    const T shift = lk_shift_for(m.value);
    const double s_minus_one = lk_exp_sum_minus_one_row(xr, static_cast<S*>(nullptr), n,
                                                        shift, m.lane, next, next_max, o);
    out[r * out_stride] =
        lk_st<S>(lk_logsumexp_finish(m.value, shift, s_minus_one, xr, n, o));
  });
}

template <class S>
void logsumexp_rows(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows, idx n) {
  logsumexp_rows_for<S>(x, x_row_stride, out, out_stride, rows, n);
}

// The row kernels with options (SoftmaxKernels::*_rows_opt): one instantiation per
// combination of options, chosen once per call.
template <class S, class F>
LK_ALWAYS_INLINE void lk_with_opt(const RowOptions<S>& a, F f) {
  using T = compute_t<S>;
  if (a.mask && a.scaled) {
    f(LkOpt<T, true, true>{a.scale, a.mask, nullptr});
  } else if (a.mask) {
    f(LkOpt<T, false, true>{a.scale, a.mask, nullptr});
  } else if (a.scaled) {
    f(LkOpt<T, true, false>{a.scale, nullptr, nullptr});
  } else {
    f(LkPlain<T>{});
  }
}

template <class S>
void softmax_rows_opt(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                      idx n, const RowOptions<S>& a) {
  lk_with_opt(a, [&](const auto& o) {
    using Opt = std::decay_t<decltype(o)>;
    if (a.stream)
      softmax_rows_for<S, true, Opt>(x, x_row_stride, out, out_row_stride, rows, n, o,
                                     a.mask_row_stride);
    else
      softmax_rows_for<S, false, Opt>(x, x_row_stride, out, out_row_stride, rows, n, o,
                                      a.mask_row_stride);
  });
}

template <class S>
void log_softmax_rows_opt(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                          idx n, const RowOptions<S>& a) {
  lk_with_opt(a, [&](const auto& o) {
    using Opt = std::decay_t<decltype(o)>;
    if (a.stream)
      log_softmax_rows_for<S, true, Opt>(x, x_row_stride, out, out_row_stride, rows, n, o,
                                         a.mask_row_stride);
    else
      log_softmax_rows_for<S, false, Opt>(x, x_row_stride, out, out_row_stride, rows, n, o,
                                          a.mask_row_stride);
  });
}

template <class S>
void logsumexp_rows_opt(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows, idx n,
                        const RowOptions<S>& a) {
  lk_with_opt(a, [&](const auto& o) {
    using Opt = std::decay_t<decltype(o)>;
    logsumexp_rows_for<S, Opt>(x, x_row_stride, out, out_stride, rows, n, o,
                               a.mask_row_stride);
  });
}

// Pieces with options (SoftmaxKernels::logsumexp_piece_opt): the two passes of
// logsumexp_piece, masked elements loaded as -inf, the exponent scaled.
template <class S, class T = compute_t<S>>
void logsumexp_piece_opt(const S* x, idx n, const RowOptions<S>& a, T* max,
                         double* sum_minus_one) {
  lk_with_opt(a, [&](const auto& o) {
    using Opt = std::decay_t<decltype(o)>;
    const LkMax<T> m = lk_row_max_lane<Opt::masked>(x, n, o.m);
    LkMax<T> unused{0, -1};
    *max = m.value;
    *sum_minus_one = lk_exp_sum_minus_one_row(x, static_cast<S*>(nullptr), n,
                                              lk_shift_for(m.value), m.lane,
                                              static_cast<const S*>(nullptr), &unused, o);
  });
}

template <class S, class T = compute_t<S>>
void softmax_piece_scaled(const S* x, S* out, idx n, T shift, T scale, T mul, bool stream) {
  lk_piece_pass(x, out, n, stream, [shift, scale, mul](T v) {
    return lk_exp_shifted<S>((v - shift) * scale) * mul;
  });
}

template <class S, class T = compute_t<S>>
void log_softmax_piece_scaled(const S* x, S* out, idx n, T shift, T scale, T log_sum,
                              bool stream) {
  lk_piece_pass(x, out, n, stream,
                [shift, scale, log_sum](T v) { return (v - shift) * scale - log_sum; });
}

// Pieces of long rows (see SoftmaxKernels::logsumexp_piece): the same two passes as the row
// kernels, with the shift and scale of the whole row given by the caller's merge.
template <class S, class T = compute_t<S>>
void logsumexp_piece(const S* x, idx n, T* max, double* sum_minus_one) {
  const LkMax<T> m = lk_row_max_lane(x, n);
  LkMax<T> unused{0, -1};
  *max = m.value;
  *sum_minus_one = lk_exp_sum_minus_one_row(x, static_cast<S*>(nullptr), n,
                                            lk_shift_for(m.value), m.lane,
                                            static_cast<const S*>(nullptr), &unused);
}

// The second passes, with streaming stores for float and double when `stream`.
template <class S, class F, class T = compute_t<S>>
void lk_piece_pass(const S* x, S* out, idx n, bool stream, F f) {
  if constexpr (sizeof(S) == sizeof(T)) {
    if (stream) {
      lk_stream_row2(out, x, static_cast<const T*>(nullptr), n, [f](T v, T, idx) { return f(v); });
      lk_stream_fence();
      return;
    }
  }
  lk_map_row(x, out, n, f);
}

template <class S, class T = compute_t<S>>
void softmax_piece(const S* x, S* out, idx n, T shift, T scale, bool stream) {
  lk_piece_pass(x, out, n, stream,
                [shift, scale](T v) { return lk_exp_shifted<S>(v - shift) * scale; });
}

template <class S, class T = compute_t<S>>
void log_softmax_piece(const S* x, S* out, idx n, T shift, T log_sum, bool stream) {
  lk_piece_pass(x, out, n, stream, [shift, log_sum](T v) { return (v - shift) - log_sum; });
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


// A block of columns as the passes see it: row c of the block starts at base + c * stride.
template <class S>
struct LkBlock {
  const S* base;
  idx stride;
};

// The column kernels' sums: the same two-level scheme as LkSum, per column. After every
// kSumBlock rows the partial sums of the input's type go into double totals. In split
// mode (see LkSum), the callers add the terms equal to 1 to `ones` and the others to
// `part` (lk_add_split): s - 1 = (ones - 1) + the rest.
template <class T, bool kSplit = false>
struct LkColumnSums {
  static constexpr idx kSumBlock = sizeof(T) == sizeof(float) ? 4 : 64;
  static constexpr idx kOnes = kSplit ? lk_max_column_block : 1;
  T part[lk_max_column_block];
  double total[lk_max_column_block];
  double carry[lk_max_column_block];
  T ones[kOnes];
  double ones_total[kOnes];
  idx w = 0;
  // Starts a block of `width` columns. (Reset in place: constructing a fresh object per
  // block and assigning it copied all three arrays, 20 KiB, which cost ~1 us per call
  // for small inputs.)
  void reset(idx width) {
    w = width;
    for (idx j = 0; j < w; ++j) part[j] = 0;
    for (idx j = 0; j < w; ++j) total[j] = 0;
    for (idx j = 0; j < w; ++j) carry[j] = 0;
    if (kSplit) {
      for (idx j = 0; j < w; ++j) ones[j] = 0;
      for (idx j = 0; j < w; ++j) ones_total[j] = 0;
    }
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
    if (kSplit) {
#pragma omp simd
      for (idx j = 0; j < w; ++j) {
        ones_total[j] += static_cast<double>(ones[j]);
        ones[j] = 0;
      }
    }
  }
  // Split mode, after the last flush: column j's sum minus 1 (see LkSum).
  double minus_one(idx j) const { return (ones_total[j] - 1.0) + total[j]; }
};

// Adds term v of column j to split-mode column sums (see LkSum).
// Per term, not per block as in LkSum: a column's maximum is in a different row for each
// column, so the rows' lane trick does not apply. This costs the column kernels 15-55% on
// in-cache blocks (a compare and two masked additions per term; four rows per load and
// store of the sums measured no better).
template <class T>
inline void lk_add_split(T* __restrict part, T* __restrict ones, T v, idx j) {
  const bool one = v == T(1);
  part[j] += one ? T(0) : v;
  ones[j] += one ? T(1) : T(0);
}

// Pass 1: the maximum of each column of the block (n x w) into `maxv`. A strided block is
// gathered into `packed` (row stride w, still in the storage type) on the way and the
// returned view points there.
template <class S, class T>
inline LkBlock<S> lk_block_max(const S* xb, idx x_axis_stride, idx x_col_stride, idx n, idx w,
                               S* packed, T* maxv) {
  for (idx j = 0; j < w; ++j) maxv[j] = lk_neg_inf<T>();
  if (x_col_stride == 1) {
    for (idx c = 0; c < n; ++c) {
      const S* xr = xb + c * x_axis_stride;
#pragma omp simd
      for (idx j = 0; j < w; ++j) {
        const T v = lk_ld(xr[j]);
        maxv[j] = v > maxv[j] ? v : maxv[j];
      }
    }
    return {xb, x_axis_stride};
  }
  for (idx c = 0; c < n; ++c) {
    const S* xr = xb + c * x_axis_stride;
    S* pr = packed + c * w;
    for (idx j = 0; j < w; ++j) pr[j] = xr[j * x_col_stride];
#pragma omp simd
    for (idx j = 0; j < w; ++j) {
      const T v = lk_ld(pr[j]);
      maxv[j] = v > maxv[j] ? v : maxv[j];
    }
  }
  return {packed, w};
}

enum class LkNormalize { softmax, log_softmax };

template <class S, LkNormalize kind>
void lk_normalize_cols(const S* x, idx x_axis_stride, idx x_col_stride, S* out,
                       idx out_axis_stride, idx out_col_stride, idx n, idx cols) {
  using T = compute_t<S>;
  // Per-column state of one block, on the heap: tens of KiB, too much for small thread
  // stacks (musl's default is 128 KiB).
  struct Work {
    T shift[lk_max_column_block];
    T acc[lk_max_column_block];
    S row[lk_max_column_block];
    LkColumnSums<T, kind == LkNormalize::log_softmax> sums;
  };
  Work* const work = &lk_thread_work<Work>();
  T* shift = work->shift;
  T* acc = work->acc;
  S* row = work->row;
  auto& sums = work->sums;
  const idx block = lk_column_block<S>(n);
  // (n x min(block, cols): a few strided rows of many classes need no more columns.)
  LkScratch<S> scratch(x_col_stride == 1 && out_col_stride == 1 ? 0
                                                                : n * (cols < block ? cols : block));
  for (idx j0 = 0; j0 < cols; j0 += block) {
    const idx w = cols - j0 < block ? cols - j0 : block;
    const LkBlock<S> xb =
        lk_block_max(x + j0 * x_col_stride, x_axis_stride, x_col_stride, n, w, scratch.data,
                     shift);
    S* ob = out + j0 * out_col_stride;
    for (idx j = 0; j < w; ++j) shift[j] = lk_shift_for(shift[j]);
    sums.reset(w);
    T* acc_part = sums.part;
    T* acc_ones = sums.ones;
    // Pass 2: sum of exp. Softmax stores the exponentials in `out` (or in the scratch block
    // when out is strided); log_softmax needs only the sum (split, for log1p(s - 1)).
    const bool out_direct = out_col_stride == 1;
    S* eb = out_direct ? ob : scratch.data;
    const idx e_stride = out_direct ? out_axis_stride : w;
    for (idx c = 0; c < n; ++c) {
      const S* xr = xb.base + c * xb.stride;
      if (kind == LkNormalize::softmax) {
        S* er = eb + c * e_stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) {
          const T v = lk_exp_shifted<S>(lk_ld(xr[j]) - shift[j]);
          er[j] = lk_st<S>(v);
          acc_part[j] += v;
        }
      } else {
#pragma omp simd
        for (idx j = 0; j < w; ++j)
          lk_add_split(acc_part, acc_ones, lk_exp_nonpositive(lk_ld(xr[j]) - shift[j]), j);
      }
      sums.row_done(c);
    }
    sums.flush();
    // Pass 3: normalize, scattering to a strided out through a row buffer.
    if (kind == LkNormalize::softmax) {
      for (idx j = 0; j < w; ++j) acc[j] = static_cast<T>(1.0 / sums.total[j]);
    } else {
      for (idx j = 0; j < w; ++j) acc[j] = lk_log_sum<T>(sums.minus_one(j));
    }
    for (idx c = 0; c < n; ++c) {
      S* orow = ob + c * out_axis_stride;
      S* dst = out_direct ? orow : row;
      if (kind == LkNormalize::softmax) {
        const S* er = eb + c * e_stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) dst[j] = lk_st<S>(lk_ld(er[j]) * acc[j]);
      } else {
        const S* xr = xb.base + c * xb.stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) dst[j] = lk_st<S>((lk_ld(xr[j]) - shift[j]) - acc[j]);
      }
      if (!out_direct)
        for (idx j = 0; j < w; ++j) orow[j * out_col_stride] = row[j];
    }
  }
}

template <class S>
void softmax_cols(const S* x, idx x_axis_stride, idx x_col_stride, S* out,
                  idx out_axis_stride, idx out_col_stride, idx n, idx cols) {
  lk_normalize_cols<S, LkNormalize::softmax>(x, x_axis_stride, x_col_stride, out,
                                              out_axis_stride, out_col_stride, n, cols);
}

template <class S>
void log_softmax_cols(const S* x, idx x_axis_stride, idx x_col_stride, S* out,
                      idx out_axis_stride, idx out_col_stride, idx n, idx cols) {
  lk_normalize_cols<S, LkNormalize::log_softmax>(x, x_axis_stride, x_col_stride, out,
                                                  out_axis_stride, out_col_stride, n, cols);
}

template <class S>
void logsumexp_cols(const S* x, idx x_axis_stride, idx x_col_stride, S* out,
                    idx out_col_stride, idx n, idx cols) {
  using T = compute_t<S>;
  struct Work {  // on the heap, as in lk_normalize_cols
    T maxv[lk_max_column_block];
    T shift[lk_max_column_block];
    LkColumnSums<T, true> sums;
  };
  Work* const work = &lk_thread_work<Work>();
  T* maxv = work->maxv;
  T* shift = work->shift;
  auto& sums = work->sums;
  const idx block = lk_column_block<S>(n);
  LkScratch<S> scratch(x_col_stride == 1 ? 0 : n * (cols < block ? cols : block));
  for (idx j0 = 0; j0 < cols; j0 += block) {
    const idx w = cols - j0 < block ? cols - j0 : block;
    const LkBlock<S> xb = lk_block_max(x + j0 * x_col_stride, x_axis_stride, x_col_stride, n,
                                       w, scratch.data, maxv);
    for (idx j = 0; j < w; ++j) shift[j] = lk_shift_for(maxv[j]);
    sums.reset(w);
    T* acc_part = sums.part;
    T* acc_ones = sums.ones;
    for (idx c = 0; c < n; ++c) {
      const S* xr = xb.base + c * xb.stride;
#pragma omp simd
      for (idx j = 0; j < w; ++j)
        lk_add_split(acc_part, acc_ones, lk_exp_nonpositive(lk_ld(xr[j]) - shift[j]), j);
      sums.row_done(c);
    }
    sums.flush();
    for (idx j = 0; j < w; ++j) {
      T result = shift[j] + lk_log_sum<T>(sums.minus_one(j));
      if (maxv[j] == -lk_neg_inf<T>()) {
        // +inf in this column: +inf unless a NaN is there too (rare: rescan the column).
        result = maxv[j];
        for (idx c = 0; c < n; ++c) {
          const T v = lk_ld(xb.base[c * xb.stride + j]);
          if (v != v) result = v;
        }
      }
      out[(j0 + j) * out_col_stride] = lk_st<S>(result);
    }
  }
}

template <class S>
void exp_array(const S* x, S* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_st<S>(lk_exp(lk_ld(x[i])));
}

template <class S>
void exp_nonpositive_array(const S* x, S* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_st<S>(lk_exp_nonpositive(lk_ld(x[i])));
}
