// Loss kernels: cross-entropy (class indices or probabilities) with its gradient fused in
// the same pass, entropy and KL divergence of softmax distributions, and the softmax /
// log-softmax backward products.
//
// Included only from kernels_target.cpp inside the per-target namespace, after
// softmax_kernels.inl, whose row machinery (max, exp sums, padded tails) it reuses.
//
// Cross-entropy of one row z (C classes, lse = logsumexp(z), p = softmax(z)):
//   index target t, smoothing eps, class weights w (W = sum w):
//     loss = (1-eps) w_t (lse - z_t) + eps/C sum_c w_c (lse - z_c)
//     grad = p * ((1-eps) w_t + eps/C W) - (1-eps) w_t [c == t] - eps/C w_c
//   probability target y (y' = (1-eps) y + eps/C):
//     loss = sum_c w_c y'_c (lse - z_c)              (0 * log 0 counts as 0)
//     grad = p * sum_c w_c y'_c - w y'
// lse - z_c is computed as (shift - z_c) + log s, never log(softmax), so a logit of 1e4 or a
// -inf on another class keeps the loss finite. The gradient is scaled by grad_scale (the
// 1/denominator of a mean) and written once; with no gradient requested nothing but the
// per-row loss is written.

template <class T>
constexpr T lk_max_finite() {
  return sizeof(T) == sizeof(float) ? T(3.4028234663852886e38) : T(1.7976931348623157e308);
}

template <class T>
inline T lk_times_nonzero(T a, T b) {
  // a * b with 0 * inf = 0: a zero target weight never picks up an infinite log term.
  return a == T(0) ? T(0) : a * b;
}

// Whether a row's lse is +inf: its maximum is +inf and none of its n elements (stride
// apart) is NaN, which would make it NaN. Read before any gradient is written (the
// gradient may overwrite the logits); only rows whose maximum is +inf are scanned.
template <class S, class T>
inline bool lk_lse_is_inf(T max, const S* z, idx n, idx stride) {
  if (max != -lk_neg_inf<T>()) return false;
  for (idx c = 0; c < n; ++c)
    if (lk_ld(z[c * stride]) != lk_ld(z[c * stride])) return false;
  return true;
}

// log s, where lse = shift + log s. When lse is +inf, log s counts as 0, so lse - z_c is
// +inf for every finite z_c (s itself is NaN then: inf - inf in the exponent; the
// gradient, softmax - y, is NaN, as softmax of such a row is).
template <class T>
inline T lk_log_sum(bool lse_is_inf, T s) {
  return lse_is_inf ? T(0) : lk_log(s);
}

// A 16-bit row's gradient, g[c] = f(e_c, y_c, c), from the exponentials kept in `e` (compute
// type), or with e null taken again from the logits z (e_c = exp(z_c - shift)).
template <class S, class T, class F>
LK_ALWAYS_INLINE void lk_narrow_grad_row(S* g, const T* e, const S* z, const S* y, idx n, T shift,
                                         F f) {
  if (e) return lk_write_row(g, e, y, n, f);
  lk_map_rows2(z, y, g, n, [=](T zc, T yc, idx c) {
    return f(lk_exp_shifted<S>(zc - shift), yc, c);
  });
}

// For a 16-bit S the exponentials are kept in a row of the compute type rather than in
// the gradient: rounded to S first, they would make the gradient's differences that
// cancel (p_t - 1, p_c - eps/C, p - y) wrong by many units. Beyond kNarrowKeep classes
// they are taken again from the logits in the gradient pass instead: storing and
// reloading a row from L2 cost more than the second exp (64x128256 float16: 3.37 ms
// stored, 2.81 ms taken again; float32 2.71-2.99 ms).

//
// kStream (float and double, a gradient beyond the cache): the exponentials are kept in the
// thread's LkStreamRow (taken again from the logits for longer rows) and the gradient is
// written once, with streaming stores, as the 16-bit formats write theirs.
template <class S, bool kStream, class T = compute_t<S>>
void cross_entropy_rows_for(const CrossEntropyRows<S>& a) {
  constexpr bool kNarrow = sizeof(S) < sizeof(T);
  static_assert(!(kStream && kNarrow), "streaming stores are for float and double rows");
  const idx n = a.n;
  const T eps = a.smoothing;
  const T eps_per_class = eps / static_cast<T>(n);
  const T keep = T(1) - eps;
  const bool keep_exps = kNarrow && a.grad && n <= kNarrowKeep;
  LkScratch<T> exp_row(keep_exps ? n : 0);
  T* stream_row = nullptr;
  if constexpr (kStream) {
    if (a.grad && n <= lk_stream_keep<T>()) stream_row = lk_thread_work<LkStreamRow<T>>().get();
  }
  // Where the exp pass keeps the exponentials: the gradient row, exp_row, the stream row,
  // or nowhere.
  auto exp_store = [&](S* g) {
    if constexpr (kNarrow) {
      return g && keep_exps ? exp_row.data : static_cast<T*>(nullptr);
    } else if constexpr (kStream) {
      return g ? stream_row : static_cast<T*>(nullptr);
    } else {
      return g;
    }
  };
  // The gradient pass of the 16-bit formats and of kStream: one write of each element.
  auto write_grad = [n](S* g, const T* e, const S* z, const S* y, T shift, auto f) {
    if constexpr (kNarrow) {
      lk_narrow_grad_row(g, e, z, y, n, shift, f);
    } else {
      // kStream keeps every row's exponentials (cross_entropy_rows streams only rows that
      // fit the stream row), so there is nothing to take again from z.
      (void)z;
      (void)shift;
      lk_stream_row2(g, e, y, n, f);
    }
  };
  lk_pipelined_rows(a.logits, a.logits_row_stride, a.rows, n,
                    [&](idx r, T m, const S* next, T* next_max) {
    const S* z = a.logits + r * a.logits_row_stride;
    S* g = a.grad ? a.grad + r * a.grad_row_stride : nullptr;
    const T shift = lk_shift_for(m);
    // Everything that reads z after the exp pass is taken first: the gradient may be
    // written over the logits (grad_out=logits).
    const bool lse_is_inf = lk_lse_is_inf(m, z, n, 1);

    if (a.labels) {
      const std::int64_t t = a.labels[r * a.label_stride];
      // Labels are validated before any kernel runs; a label that is out of range here
      // anyway (the caller changed it since) is skipped rather than indexed with.
      if (t == a.ignore_index || t < 0 || t >= n) {
        // Still take the next row's max (the pipeline needs it); nothing else to do.
        if (next) *next_max = lk_row_max(next, n);
        a.loss[r * a.loss_stride] = 0;
        if (g)
          for (idx c = 0; c < n; ++c) g[c] = lk_st<S>(T(0));
        return;
      }
      // The loss is assembled in double: shift - z_c of float32 logits +-3e38 is 6e38,
      // past float32's range, in a loss that fits it.
      const T z_t = lk_ld(z[t]);
      const double gap_t = double(shift) - double(z_t);  // lse - z_t = gap_t + log s
      // eps/C sum_c w_c (shift - z_c); -inf logits make it +inf, as they should.
      double smooth_gap = 0;
      if (eps != T(0)) {
        const double shift_d = double(shift);
        if (a.weight) {
          const T* w = a.weight;
#pragma omp simd reduction(+ : smooth_gap)
          for (idx c = 0; c < n; ++c)
            smooth_gap += double(w[c]) * (shift_d - double(lk_ld(z[c])));
        } else {
#pragma omp simd reduction(+ : smooth_gap)
          for (idx c = 0; c < n; ++c) smooth_gap += shift_d - double(lk_ld(z[c]));
        }
      }
      const auto e = exp_store(g);
      const T s = lk_exp_sum_row(z, e, n, shift, next, next_max);
      const T log_s = lk_log_sum(lse_is_inf, s);
      const T w_t = a.weight ? a.weight[t] : T(1);
      double loss = double(keep) * double(w_t) * (gap_t + double(log_s));
      if (eps != T(0))
        loss += double(eps_per_class) * (smooth_gap + double(a.weight_sum) * double(log_s));
      a.loss[r * a.loss_stride] = loss;
      if (g) {
        const T scale = a.grad_scale * (keep * w_t + eps_per_class * a.weight_sum) / s;
        const T smooth = a.grad_scale * eps_per_class;
        const T target_step = a.grad_scale * keep * w_t;
        if constexpr (kStream) {
          if (e) {
            // The target's step is taken apart, after the streaming pass, rather than by
            // comparing every class index with t in it (64-bit compares: +25% here).
            const T* w = a.weight && eps != T(0) ? a.weight : nullptr;
            if (w) {
              lk_stream_row2(g, e, static_cast<const T*>(nullptr), n,
                             [=](T ec, T, idx c) { return ec * scale - smooth * w[c]; });
            } else {
              lk_stream_row2(g, e, static_cast<const T*>(nullptr), n,
                             [=](T ec, T, idx) { return ec * scale - smooth; });
            }
            lk_stream_fence();  // before the plain store into a streamed line
            const T g_t = w ? e[t] * scale - smooth * w[t] : e[t] * scale - smooth;
            g[t] = g_t - target_step;
            return;
          }
        }
        if constexpr (kNarrow || kStream) {
          const S* none = nullptr;
          if (a.weight && eps != T(0)) {
            const T* w = a.weight;
            write_grad(g, e, z, none, shift, [=](T ec, T, idx c) {
              return ec * scale - smooth * w[c] - (c == t ? target_step : T(0));
            });
          } else {
            write_grad(g, e, z, none, shift, [=](T ec, T, idx c) {
              return ec * scale - smooth - (c == t ? target_step : T(0));
            });
          }
        } else {
          if (a.weight && eps != T(0)) {
            const T* w = a.weight;
#pragma omp simd
            for (idx c = 0; c < n; ++c) g[c] = g[c] * scale - smooth * w[c];
          } else {
#pragma omp simd
            for (idx c = 0; c < n; ++c) g[c] = g[c] * scale - smooth;
          }
          g[t] -= target_step;
        }
      }
      return;
    }

    // Probability targets: B = sum w y', D = sum w y' (shift - z), with 0 * inf = 0.
    const S* y = a.probs + r * a.probs_row_stride;
    const T* w = a.weight;
    double b_sum = 0, d_sum = 0;
    const double shift_d = double(shift);
    if (w) {
#pragma omp simd reduction(+ : b_sum, d_sum)
      for (idx c = 0; c < n; ++c) {
        const T wy = w[c] * (keep * lk_ld(y[c]) + eps_per_class);
        b_sum += double(wy);
        d_sum += wy == T(0) ? 0.0 : double(wy) * (shift_d - double(lk_ld(z[c])));  // see above
      }
    } else {
#pragma omp simd reduction(+ : b_sum, d_sum)
      for (idx c = 0; c < n; ++c) {
        const T wy = keep * lk_ld(y[c]) + eps_per_class;
        b_sum += double(wy);
        d_sum += wy == T(0) ? 0.0 : double(wy) * (shift_d - double(lk_ld(z[c])));
      }
    }
    const auto e = exp_store(g);
    const T s = lk_exp_sum_row(z, e, n, shift, next, next_max);
    const T log_s = lk_log_sum(lse_is_inf, s);
    // A target with no weight anywhere (b_sum = 0) has loss 0, also for a row of -inf
    // logits (log s = -inf).
    a.loss[r * a.loss_stride] = b_sum == 0.0 ? d_sum : d_sum + b_sum * double(log_s);
    if (g) {
      const T scale = a.grad_scale * static_cast<T>(b_sum) / s;
      const T gs = a.grad_scale;
      if constexpr (kNarrow || kStream) {
        if (w) {
          write_grad(g, e, z, y, shift, [=](T ec, T yc, idx c) {
            return ec * scale - gs * w[c] * (keep * yc + eps_per_class);
          });
        } else {
          write_grad(g, e, z, y, shift, [=](T ec, T yc, idx) {
            return ec * scale - gs * (keep * yc + eps_per_class);
          });
        }
      } else if (w) {
#pragma omp simd
        for (idx c = 0; c < n; ++c)
          g[c] = g[c] * scale - gs * w[c] * (keep * y[c] + eps_per_class);
      } else {
#pragma omp simd
        for (idx c = 0; c < n; ++c) g[c] = g[c] * scale - gs * (keep * y[c] + eps_per_class);
      }
    }
  });
  if constexpr (kStream) lk_stream_fence();
}

template <class S>
void cross_entropy_rows(const CrossEntropyRows<S>& a) {
  // Streamed only where the exponentials can be kept (the recomputing gradient pass did
  // not vectorize with streaming stores: 16 x 2^20 float32 took 50 ms instead of 8.7).
  if constexpr (sizeof(S) == sizeof(compute_t<S>)) {
    if (a.stream && a.grad && a.n <= lk_stream_keep<S>()) return cross_entropy_rows_for<S, true>(a);
  }
  cross_entropy_rows_for<S, false>(a);
}

// Cross-entropy with the options of options_spec.md (temperature, softcap, z_loss, where,
// sample_weight): every call with an option comes here, through the row driver (which
// gathers rows that are not contiguous along the classes), so the plain kernels above stay
// exactly as they are. Three passes per row, as the plain kernel's:
//   1. the max m of the unmasked raw logits (z -> z' is increasing);
//   2. u = z' - max z' = (z - m) / T, or softcap (tanh(z/softcap) - tanh(m/softcap)) / T,
//      its exponential (0 where masked) kept with dz'/dz for the gradient, and their sum;
//      u is formed from differences of the raw logits, so a rounded z' = z / T (an ulp of
//      |z / T|, 3e-5 at z = 300, T = 0.7 in float32) never enters;
//   3. the gradient, written once: (softmax(z') (coef + 2 z_loss lse) - target terms)
//      times dz'/dz (1/T without softcap, folded into the row's scale), 0 where masked.
// Every read of the logits (the loss's z_t and smoothing terms too) comes before the
// gradient is written, so grad_out may be the logits. The loss is assembled in double as
// in cross_entropy_rows_for, from lse - z'_c = (max z' - z'_c) + log s, never log(softmax). Template flags say whether softcap and a mask are present, so
// no loop has a branch on an option; temperature is a multiply (by 1 when absent), z_loss
// and sample weights are per-row scalars.
//
// Rows with sample weight 0 contribute nothing: loss 0 and gradient 0 (0 * inf = 0, as for
// a zero class weight). A fully masked row: lse = -inf, its z_loss term counts as 0 (no
// classes, nothing to regularize), its gradient is 0, its loss +inf when a label (or a
// positive probability) is on a masked class, else 0.

// tanh(u) from one exp of -2|u| <= 0: saturates to +-1 (exp underflows to 0) and keeps
// NaN. Near 0, 1 - e loses relative accuracy, so float32 takes an odd Taylor polynomial
// below |u| = 0.25 (truncation error < 3e-9 relative there); in double the exp form's
// absolute error (~1e-16) is far below a tolerance of a softcapped logit.
template <class T>
LK_ALWAYS_INLINE T lk_ce_tanh(T u) {
  const T a = u < T(0) ? -u : u;
  const T e = lk_exp_nonpositive(T(-2) * a);
  T t = (T(1) - e) / (T(1) + e);
  if constexpr (sizeof(T) == sizeof(float)) {
    const T a2 = a * a;
    const T p = a * (T(1) + a2 * (T(-1.0 / 3) + a2 * (T(2.0 / 15) + a2 * (T(-17.0 / 315) +
                                                                       a2 * T(62.0 / 2835)))));
    t = a < T(0.25) ? p : t;
  }
  return u < T(0) ? -t : t;
}

// Whether x is finite (x - x is NaN for +-inf and NaN; no -ffinite-math-only here).
template <class T>
inline bool lk_isfinite_scale(T x) {
  return x - x == T(0);
}

// One vector of masked logits: out[j] = b[j] != 0 ? xv[j] : -inf, for L = lk_lanes<T>()
// mask bytes. With AVX-512BW the bytes become a mask register (one vptestmb) and the
// select one masked blend; with AVX2 they are widened (vpmovzx) and compared. The
// generic loop (baseline, NEON) widens to 32 bits first: a select on the bytes
// themselves went scalar, and GCC's widening of 16 bytes to a 512-bit vector went through
// four stack stores and one reload (a store-forwarding stall per vector).
//
// The bytes are loaded as integers of 4, 8 or 16 bytes and the lanes moved through GCC
// vectors of T, not through char or may_alias intrinsic pointers (which may alias
// anything). This was written while GCC kept the exp loop's sum and max accumulators in
// memory; that went away only when the loop moved into a function of its own
// (lk_ce_masked_exp_sum), so these typed accesses are a precaution, not a measured gain.
#if defined(__GNUC__)
typedef std::int32_t LkMaskU32 __attribute__((aligned(1)));
typedef long long LkMaskU64 __attribute__((aligned(1)));
typedef long long LkMaskV16 __attribute__((vector_size(16), aligned(1)));
#endif
template <class T>
LK_ALWAYS_INLINE void lk_ce_mask_select(T* __restrict out, const T* __restrict xv,
                                        const std::uint8_t* __restrict b) {
  constexpr idx L = lk_lanes<T>();
#if defined(__GNUC__)
#define LK_CE_LOAD_BYTES16(b) (reinterpret_cast<__m128i>(*reinterpret_cast<const LkMaskV16*>(b)))
#define LK_CE_LOAD_BYTES8(b) (_mm_cvtsi64_si128(*reinterpret_cast<const LkMaskU64*>(b)))
#define LK_CE_LOAD_BYTES4(b) (_mm_cvtsi32_si128(*reinterpret_cast<const LkMaskU32*>(b)))
#else
#define LK_CE_LOAD_BYTES16(b) (_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)))
#define LK_CE_LOAD_BYTES8(b) (_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b)))
#define LK_CE_LOAD_BYTES4(b) (_mm_cvtsi32_si128(*reinterpret_cast<const int*>(b)))
#endif
  // Lanes in and out through GCC vectors of T (plain loads and stores of T's alias set),
  // as the bytes above, rather than _mm*_loadu / _mm*_storeu.
#if defined(__GNUC__)
#define LK_CE_VEC_IN(V, x) ([&] { V v_; for (idx j_ = 0; j_ < L; ++j_) v_[j_] = (x)[j_]; return v_; }())
#define LK_CE_VEC_OUT(out, v) do { for (idx j_ = 0; j_ < L; ++j_) (out)[j_] = (v)[j_]; } while (0)
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  if constexpr (L == 16 && sizeof(T) == 4) {
    typedef float V __attribute__((vector_size(64)));
    V x = LK_CE_VEC_IN(V, xv);
    // The logits in a register before the blend: folded into it as a memory operand, the
    // load becomes a masked load, which waits for the mask (fault suppression): the next
    // row's loads from DRAM then waited for its mask bytes (2x the time of the plain call).
    __asm__("" : "+v"(x));
    const __m128i bytes = LK_CE_LOAD_BYTES16(b);
    const __mmask16 k = _mm_test_epi8_mask(bytes, bytes);
    const V r = reinterpret_cast<V>(_mm512_mask_blend_ps(
        k, _mm512_set1_ps(lk_neg_inf<float>()), reinterpret_cast<__m512>(x)));
    LK_CE_VEC_OUT(out, r);
    return;
  }
  if constexpr (L == 8 && sizeof(T) == 8) {
    typedef double V __attribute__((vector_size(64)));
    V x = LK_CE_VEC_IN(V, xv);
    __asm__("" : "+v"(x));  // (as for float)
    const __m128i bytes = LK_CE_LOAD_BYTES8(b);
    const __mmask8 k = static_cast<__mmask8>(_mm_test_epi8_mask(bytes, bytes));
    const V r = reinterpret_cast<V>(_mm512_mask_blend_pd(
        k, _mm512_set1_pd(lk_neg_inf<double>()), reinterpret_cast<__m512d>(x)));
    LK_CE_VEC_OUT(out, r);
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (L == 8 && sizeof(T) == 4) {
    typedef float V __attribute__((vector_size(32)));
    const __m256i wide = _mm256_cvtepu8_epi32(LK_CE_LOAD_BYTES8(b));
    const __m256 off = _mm256_castsi256_ps(_mm256_cmpeq_epi32(wide, _mm256_setzero_si256()));
    const V r = reinterpret_cast<V>(_mm256_blendv_ps(
        reinterpret_cast<__m256>(LK_CE_VEC_IN(V, xv)), _mm256_set1_ps(lk_neg_inf<float>()), off));
    LK_CE_VEC_OUT(out, r);
    return;
  }
  if constexpr (L == 4 && sizeof(T) == 8) {
    typedef double V __attribute__((vector_size(32)));
    const __m256i wide = _mm256_cvtepu8_epi64(LK_CE_LOAD_BYTES4(b));
    const __m256d off = _mm256_castsi256_pd(_mm256_cmpeq_epi64(wide, _mm256_setzero_si256()));
    const V r = reinterpret_cast<V>(_mm256_blendv_pd(
        reinterpret_cast<__m256d>(LK_CE_VEC_IN(V, xv)), _mm256_set1_pd(lk_neg_inf<double>()), off));
    LK_CE_VEC_OUT(out, r);
    return;
  }
#endif
#undef LK_CE_VEC_IN
#undef LK_CE_VEC_OUT
#endif
  std::int32_t bi[L];
#pragma omp simd
  for (idx j = 0; j < L; ++j) bi[j] = b[j];
#pragma omp simd
  for (idx j = 0; j < L; ++j) out[j] = bi[j] != 0 ? xv[j] : lk_neg_inf<T>();
}

// The exp pass of a masked row without softcap (cross_entropy_rows_options_for's
// kMaskX): sum of exp((x - shift) * inv_t) over the row's unmasked logits (x = mb ? z :
// -inf), the terms (0 at masked classes) stored to e unless it is null, and, when next
// is not null, the max of the next row's unmasked logits into *next_max. A function of
// its own, as lk_exp_sum_store: inside the options kernel's lambdas GCC kept the sum and
// max accumulators in memory (a store and a reload on each one's dependency chain per
// vector).
#if defined(__GNUC__)
#define LK_CE_NOINLINE __attribute__((noinline))
#else
#define LK_CE_NOINLINE
#endif
template <class S, class T = compute_t<S>>
LK_CE_NOINLINE T lk_ce_masked_exp_sum(const S* __restrict z, const std::uint8_t* __restrict mb,
                                          T* e, idx n, T shift, T inv_t,
                                          const S* __restrict next,
                                          const std::uint8_t* __restrict next_mb, T* next_max) {
  constexpr idx L = lk_lanes<T>();
  LkSum<T> sum;
  T macc[L];
  for (idx j = 0; j < L; ++j) macc[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
    T xv[L], sel[L], v[L];
    lk_load_vector(xv, z + i);
    lk_ce_mask_select(sel, xv, mb + i);
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = lk_exp_nonpositive((sel[j] - shift) * inv_t);
    sum.add(v);
    if (e) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) e[i + j] = v[j];
    }
    if (next) {
      T nv[L], nsel[L];
      lk_load_vector(nv, next + i);
      lk_ce_mask_select(nsel, nv, next_mb + i);
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = nsel[j] > macc[j] ? nsel[j] : macc[j];
    }
  }
  if (i < n) {
    const idx count = n - i;
    std::uint8_t bb[L];
    T xv[L], sel[L], v[L];
    for (idx j = 0; j < L; ++j) bb[j] = 0;
    for (idx j = 0; j < count; ++j) bb[j] = mb[i + j];
    lk_load_padded(xv, z + i, count);
    lk_ce_mask_select(sel, xv, bb);
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = lk_exp_nonpositive((sel[j] - shift) * inv_t);
    sum.add(v);
    if (e)
      for (idx j = 0; j < count; ++j) e[i + j] = v[j];
    if (next) {
      T nv[L], nsel[L];
      for (idx j = 0; j < L; ++j) bb[j] = 0;
      for (idx j = 0; j < count; ++j) bb[j] = next_mb[i + j];
      lk_load_padded(nv, next + i, count);
      lk_ce_mask_select(nsel, nv, bb);
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = nsel[j] > macc[j] ? nsel[j] : macc[j];
    }
  }
  if (next) *next_max = lk_reduce_max(macc);
  return sum.result();
}

// A lambda's always_inline (GCC, Clang): the row kernels' block bodies must inline into
// their loops for their arrays to stay in registers.
#if defined(__GNUC__)
#define LK_CE_INLINE_LAMBDA __attribute__((always_inline))
#else
#define LK_CE_INLINE_LAMBDA
#endif

template <class S, bool kCap, bool kMask, class T = compute_t<S>>
void cross_entropy_rows_options_for(const CrossEntropyRows<S>& a) {
  constexpr idx L = lk_lanes<T>();
  constexpr bool kNarrow = sizeof(S) < sizeof(T);
  const idx n = a.n;
  const T eps = a.smoothing;
  const T keep = T(1) - eps;
  const T inv_t = a.inv_temperature;
  const double inv_t_d = double(inv_t);
  const T cap = a.softcap;
  const T inv_cap = kCap ? T(1) / cap : T(0);
  const T cap_t = cap * inv_t;
  const double cap_t_d = double(cap_t);
  const T* w = a.weight;
  constexpr T kNegInf = lk_neg_inf<T>();
  const T kPosInf = -lk_neg_inf<T>();
  // The exponentials go into the gradient row itself (float, double: as in the plain
  // kernel, the exp loop fetches the gradient's lines while it is bound by arithmetic) or,
  // for a 16-bit S, into a row of T; softcap's dz'/dz into a row of T.
  LkScratch<T> scratch(a.grad ? ((kNarrow ? 1 : 0) + (kCap ? 1 : 0)) * n : 0);
  T* const er_narrow = kNarrow && a.grad ? scratch.data : nullptr;
  T* const dz = kCap && a.grad ? scratch.data + (kNarrow ? n : 0) : nullptr;
  // The row's mask as 1 / 0 in T (read or gathered from the bytes once per row, then
  // compared in T in every loop: bytes in the loops made GCC pick 16-byte vectors for
  // the whole loop and stall on the stores between them), padded with L zeros.
  // Two such rows: this row's and the next row's, whose masked max the exp loop takes.
  LkScratch<T> mask_rows(kMask ? 2 * (n + L) : 0);
  T* mask_cur = mask_rows.data;
  T* mask_next = kMask ? mask_rows.data + n + L : nullptr;
  if constexpr (kMask)
    for (idx j = 0; j < L; ++j) mask_cur[n + j] = mask_next[n + j] = T(0);
  // kMaskX (a mask without softcap): the mask bytes are read in the float loops
  // themselves, one vector at a time, as a select of the logits: x = mask ? z : -inf
  // (lk_ce_mask_select: on AVX-512 one vptestmb and a masked blend), in the exp pass
  // (exp(-inf - shift) = 0, and a NaN logit at a masked class is gone) and in the next
  // row's max. So the exponentials kept in the gradient row are already 0 at masked
  // classes and, with no smoothing and a finite row scale, the gradient pass
  // (e * scale - 0) needs no mask either. The row of 1 / 0 (mask_cur) is converted only
  // for what needs it: label smoothing, probability targets, a non-finite row scale.
  // (softcap maps -inf to a finite -softcap, so it keeps the 1 / 0 row in every loop.)
  constexpr bool kMaskX = kMask && !kCap;
  // The mask bytes of a row, contiguous: in place when the class stride is 1, else
  // gathered into one of two rows of mask_bytes (by the row's parity: this row's and the
  // next row's are used together), once per call when every row has the same mask.
  const bool mask_gather = kMaskX && a.mask_class_stride != 1;
  LkScratch<std::uint8_t> mask_bytes(mask_gather ? 2 * n : 0);
  idx gathered[2] = {-1, -1};
  auto row_bytes = [&](idx row) -> const std::uint8_t* {
    const std::uint8_t* mb = a.mask + row * a.mask_row_stride;
    if (!mask_gather) return mb;
    const idx half = a.mask_row_stride == 0 ? 0 : (row & 1);
    std::uint8_t* dst = mask_bytes.data + half * n;
    if (gathered[half] >= 0 && (a.mask_row_stride == 0 || gathered[half] == row)) return dst;
    const idx ms = a.mask_class_stride;
    for (idx c = 0; c < n; ++c) dst[c] = mb[c * ms];
    gathered[half] = row;
    return dst;
  };
  // One vector of masked logits: out = b != 0 ? x : -inf (count < L: a tail, whose
  // bytes beyond count are not read and whose padding is -inf).
  auto mask_block = [](T* out, const T* xv, const std::uint8_t* b, idx count,
                       auto full) LK_CE_INLINE_LAMBDA {
    if constexpr (decltype(full)::value) {
      lk_ce_mask_select(out, xv, b);
    } else {
      std::uint8_t bb[L];
      for (idx j = 0; j < L; ++j) bb[j] = 0;
      for (idx j = 0; j < count; ++j) bb[j] = b[j];
      lk_ce_mask_select(out, xv, bb);
    }
  };
  // The max of a row's unmasked logits (the first row, and after a skipped row; the
  // others come from the previous row's exp loop).
  auto masked_row_max = [&](const S* zr, const std::uint8_t* mb) {
    T macc[L];
    for (idx j = 0; j < L; ++j) macc[j] = kNegInf;
    idx i = 0;
    for (; i + L <= n; i += L) {
      T xv[L], ov[L];
      lk_load_vector(xv, zr + i);
      mask_block(ov, xv, mb + i, L, std::true_type{});
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = ov[j] > macc[j] ? ov[j] : macc[j];
    }
    if (i < n) {
      T xv[L], ov[L];
      lk_load_padded(xv, zr + i, n - i);
      mask_block(ov, xv, mb + i, n - i, std::false_type{});
#pragma omp simd
      for (idx j = 0; j < L; ++j) macc[j] = ov[j] > macc[j] ? ov[j] : macc[j];
    }
    return lk_reduce_max(macc);
  };
  // The 1 / 0 row, converted once per call when the mask is the same for every row.
  bool mask_static = false;
  auto convert_mask = [&](idx row, T* mr) {
    const std::uint8_t* mb = a.mask + row * a.mask_row_stride;
    const idx ms = a.mask_class_stride;
    if (ms == 1) {
#pragma omp simd
      for (idx c = 0; c < n; ++c) mr[c] = static_cast<T>(static_cast<std::int32_t>(mb[c] != 0));
    } else {
      for (idx c = 0; c < n; ++c) mr[c] = mb[c * ms] != 0 ? T(1) : T(0);
    }
  };
  // The next row's max, taken in this row's exp loop (the rows kernels' pipeline).
  bool have_max = false;  // (and, with a mask, the row's mask converted in mask_cur)
  T carried_max = kNegInf;
  for (idx r = 0; r < a.rows; ++r) {
    const S* z = a.logits + r * a.logits_row_stride;
    S* g = a.grad ? a.grad + r * a.grad_row_stride : nullptr;
    const double sw = a.sample_weight ? a.sample_weight[r * a.sample_weight_stride] : 1.0;
    std::int64_t t = 0;
    bool skip = sw == 0.0;
    if (a.labels) {
      t = a.labels[r * a.label_stride];
      // Out of range only if the labels changed since they were validated: skipped.
      if (t == a.ignore_index || t < 0 || t >= n) skip = true;
    }
    if (skip) {
      a.loss[r * a.loss_stride] = 0;
      if (g)
        for (idx c = 0; c < n; ++c) g[c] = lk_st<S>(T(0));
      have_max = false;
      continue;
    }
    const T* m = nullptr;
    // kMaskX: the row of 1 / 0 when first needed (m stays null until then).
    auto need_m = [&]() {
      if (!mask_static) {
        convert_mask(r, mask_cur);
        mask_static = a.mask_row_stride == 0;
      }
      m = mask_cur;
    };
    if constexpr (kMaskX) {
      if (eps != T(0) || !a.labels) need_m();
    } else if constexpr (kMask) {
      if (have_max) {  // converted in the previous row's pass
        T* const converted = mask_next;
        mask_next = mask_cur;
        mask_cur = converted;
      } else
        convert_mask(r, mask_cur);
      m = mask_cur;
    }
    // Pass 1: the max of the unmasked raw logits (z -> z' is increasing, so it is z''s
    // argmax); NaN is not a max (it makes the sum NaN).
    T mx = carried_max;
    if (!have_max) {
      if constexpr (kMaskX) {
        mx = masked_row_max(z, row_bytes(r));
      } else if constexpr (kMask) {
        // Whole vectors, then the tail: a block loop with a variable trip count inside
        // would keep these arrays in memory rather than registers.
        T macc[L];
        for (idx j = 0; j < L; ++j) macc[j] = kNegInf;
        idx i = 0;
        for (; i + L <= n; i += L) {
          T xv[L];
          lk_load_vector(xv, z + i);
          const T* mk = m + i;
#pragma omp simd
          for (idx j = 0; j < L; ++j)
            macc[j] = mk[j] != T(0) && xv[j] > macc[j] ? xv[j] : macc[j];
        }
        if (i < n) {
          T xv[L];
          lk_load_padded(xv, z + i, n - i);
          const T* mk = m + i;  // (padded with zeros)
#pragma omp simd
          for (idx j = 0; j < L; ++j)
            macc[j] = mk[j] != T(0) && xv[j] > macc[j] ? xv[j] : macc[j];
        }
        mx = lk_reduce_max(macc);
      } else {
        mx = lk_row_max(z, n);
      }
    }
    have_max = false;
    const S* next = r + 1 < a.rows ? z + a.logits_row_stride : nullptr;
    if constexpr (kMask && !kMaskX)
      if (next) convert_mask(r + 1, mask_next);
    const T* next_m = mask_next;  // (padded with zeros)
    const std::uint8_t* cur_mb = kMaskX ? row_bytes(r) : nullptr;
    const std::uint8_t* next_mb = kMaskX && next ? row_bytes(r + 1) : nullptr;
    // u_c = z'_c - max z' <= 0, formed from differences of the raw logits (or of their
    // tanh) and scaled after: z' itself, rounded, would be off by an ulp of |z / T|.
    const T shift = lk_shift_for(mx);
    const T th_m = kCap ? lk_ce_tanh(mx * inv_cap) : T(0);
    // lse = +inf: the max is +inf and no unmasked logit is NaN (scanned only then).
    bool lse_is_inf = false;
    if (!kCap && mx == kPosInf) {
      lse_is_inf = true;
      if constexpr (kMaskX) {
        for (idx c = 0; c < n; ++c)
          if (cur_mb[c] != 0 && lk_ld(z[c]) != lk_ld(z[c])) lse_is_inf = false;
      } else {
        for (idx c = 0; c < n; ++c)
          if ((!kMask || m[c] != T(0)) && lk_ld(z[c]) != lk_ld(z[c])) lse_is_inf = false;
      }
    }
    // max z' - z'_c in double (lse - z'_c = that + log s), for the loss.
    auto gap_of = [=](T x) {
      if constexpr (kCap)
        return (double(th_m) - double(lk_ce_tanh(x * inv_cap))) * cap_t_d;
      else
        return (double(shift) - double(x)) * inv_t_d;
    };
    // Label smoothing over the row's unmasked classes: eps / C_row each, and their weight.
    T eps_row = T(0), w_row = T(0);
    if (eps != T(0)) {
      if constexpr (kMask) {
        idx count = 0;
        double wsum = 0;
#pragma omp simd reduction(+ : count)
        for (idx c = 0; c < n; ++c) count += m[c] != T(0) ? 1 : 0;
        if (w) {
#pragma omp simd reduction(+ : wsum)
          for (idx c = 0; c < n; ++c) wsum += m[c] != T(0) ? double(w[c]) : 0.0;
        }
        eps_row = count ? eps / static_cast<T>(count) : T(0);
        w_row = w ? static_cast<T>(wsum) : static_cast<T>(count);
      } else {
        eps_row = eps / static_cast<T>(n);
        w_row = a.weight_sum;
      }
    }
    // Everything the loss reads from the logits, before the exp pass (which may write the
    // gradient over them: grad_out=logits).
    const S* y = a.labels ? nullptr : a.probs + r * a.probs_row_stride;
    const T w_t = a.labels && w ? w[t] : T(1);
    const bool t_masked =
        kMask && a.labels &&
        (kMaskX ? a.mask[r * a.mask_row_stride + t * a.mask_class_stride] == 0 : m[t] == T(0));
    double gap_t = 0, smooth_gap = 0, b_sum = 0, d_sum = 0, masked_mass = 0;
    if (a.labels) {
      if (!t_masked) gap_t = gap_of(lk_ld(z[t]));
      if (eps_row != T(0)) {
        // sum over unmasked c of w_c (max z' - z'_c), summed as the plain kernel sums it
        // (T = 1 without a mask: its very bits).
        if (w) {
#pragma omp simd reduction(+ : smooth_gap)
          for (idx c = 0; c < n; ++c) {
            const double term = double(w[c]) * gap_of(lk_ld(z[c]));
            smooth_gap += kMask ? (m[c] != T(0) ? term : 0.0) : term;
          }
        } else {
#pragma omp simd reduction(+ : smooth_gap)
          for (idx c = 0; c < n; ++c) {
            const double term = gap_of(lk_ld(z[c]));
            smooth_gap += kMask ? (m[c] != T(0) ? term : 0.0) : term;
          }
        }
      }
    } else {
      // Probability targets: y' = (1 - eps) y + eps / C_row on unmasked classes,
      // B = sum w y', D = sum w y' (max z' - z'), 0 * inf = 0; a masked class with
      // y' != 0 makes the loss +inf.
      if (w) {
#pragma omp simd reduction(+ : b_sum, d_sum, masked_mass)
        for (idx c = 0; c < n; ++c) {
          const bool in = kMask ? m[c] != T(0) : true;
          const T wy = w[c] * (keep * lk_ld(y[c]) + (in ? eps_row : T(0)));
          b_sum += double(wy);
          d_sum += wy == T(0) || !in ? 0.0 : double(wy) * gap_of(lk_ld(z[c]));
          if (kMask) masked_mass += in ? 0.0 : (wy < T(0) ? -double(wy) : double(wy));
        }
      } else {
#pragma omp simd reduction(+ : b_sum, d_sum, masked_mass)
        for (idx c = 0; c < n; ++c) {
          const bool in = kMask ? m[c] != T(0) : true;
          const T wy = keep * lk_ld(y[c]) + (in ? eps_row : T(0));
          b_sum += double(wy);
          d_sum += wy == T(0) || !in ? 0.0 : double(wy) * gap_of(lk_ld(z[c]));
          if (kMask) masked_mass += in ? 0.0 : (wy < T(0) ? -double(wy) : double(wy));
        }
      }
    }
    // Pass 2: exp(u) (0 where masked), kept for the gradient with dz'/dz, summed as the
    // row kernels sum; the next row's max on the way.
    T* const e = !g ? nullptr : kNarrow ? er_narrow : reinterpret_cast<T*>(g);
    LkSum<T> sum;
    T sum_x = T(0);  // kMaskX: the sum from lk_ce_masked_exp_sum
    T macc[L];
    for (idx j = 0; j < L; ++j) macc[j] = kNegInf;
    // One vector of classes from i; kFull: a whole vector (constant trip counts only, so
    // that the arrays stay in registers), else the tail of n - i < L classes.
    auto block = [&](idx i, auto full) LK_CE_INLINE_LAMBDA {
      constexpr bool kFull = decltype(full)::value;
      const idx count = kFull ? L : n - i;
      T xv[L], v[L], dv[L];
      if constexpr (kFull)
        lk_load_vector(xv, z + i);
      else
        lk_load_padded(xv, z + i, count);
      const T* mk = kMask ? m + i : nullptr;  // (padded with zeros)
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        const T x = xv[j];
        T u;
        if constexpr (kCap) {
          const T th = lk_ce_tanh(x * inv_cap);
          u = (th - th_m) * cap_t;
          dv[j] = (T(1) - th * th) * inv_t;
        } else {
          u = (x - shift) * inv_t;
        }
        const T ex = lk_exp_nonpositive(u);
        // Masked classes (and, with softcap, whose padding is finite, the tail) are 0.
        if constexpr (kMask)
          v[j] = mk[j] != T(0) ? ex : T(0);
        else if constexpr (kCap && !kFull)
          v[j] = j < count ? ex : T(0);
        else
          v[j] = ex;
      }
      sum.add(v);
      if (e) {
        if constexpr (kFull) {
#pragma omp simd
          for (idx j = 0; j < L; ++j) e[i + j] = v[j];
          if constexpr (kCap) {
#pragma omp simd
            for (idx j = 0; j < L; ++j) dz[i + j] = dv[j];
          }
        } else {
          for (idx j = 0; j < count; ++j) e[i + j] = v[j];
          if constexpr (kCap)
            for (idx j = 0; j < count; ++j) dz[i + j] = dv[j];
        }
      }
      if (next) {
        T nv[L];
        if constexpr (kFull)
          lk_load_vector(nv, next + i);
        else
          lk_load_padded(nv, next + i, count);
        if constexpr (kMask) {
          const T* nm = next_m + i;
#pragma omp simd
          for (idx j = 0; j < L; ++j)
            macc[j] = nm[j] != T(0) && nv[j] > macc[j] ? nv[j] : macc[j];
        } else {
#pragma omp simd
          for (idx j = 0; j < L; ++j) macc[j] = nv[j] > macc[j] ? nv[j] : macc[j];
        }
      }
    };
    // (kMaskX: the exp pass of its own, lk_ce_masked_exp_sum; the block above serves the
    // other instances.)
    if constexpr (kMaskX) {
      T next_max = kNegInf;
      const T s_x = lk_ce_masked_exp_sum<S>(z, cur_mb, e, n, shift, inv_t, next, next_mb,
                                           &next_max);
      sum_x = s_x;
      if (next) {
        carried_max = next_max;
        have_max = true;
      }
    } else {
      idx i = 0;
      for (; i + L <= n; i += L) block(i, std::true_type{});
      if (i < n) block(i, std::false_type{});
      if (next) {
        carried_max = lk_reduce_max(macc);
        have_max = true;
      }
    }
    const T s = kMaskX ? sum_x : sum.result();
    const T log_s = lk_log_sum(lse_is_inf, s);
    const double log_s_d = double(log_s);
    // lse(z') for z_loss: max z' + log s (-inf for a fully masked row).
    const double top = kCap ? double(cap_t) * double(th_m) : double(shift) * inv_t_d;
    const double lse = top + log_s_d;
    const bool z_on = a.z_loss != T(0) && lse != double(kNegInf);
    const double z_term = z_on ? double(a.z_loss) * lse * lse : 0.0;
    const T z_grad = z_on ? static_cast<T>(2.0 * double(a.z_loss) * lse) : T(0);
    // The gradient's row scale: mean's 1/denominator, the sample weight, and (without
    // softcap, where dz'/dz is the constant 1/T) the temperature.
    const T gs = static_cast<T>(double(a.grad_scale) * sw) * (kCap ? T(1) : inv_t);
    // The mask's and softcap's share of a gradient element.
    auto finish = [&](idx c, T v) LK_CE_INLINE_LAMBDA {
      if constexpr (kCap) v = v * dz[c];
      if constexpr (kMask) v = m[c] != T(0) ? v : T(0);  // exactly 0, also where v is NaN
      return v;
    };

    if (a.labels) {
      const double kw = double(keep) * double(w_t);
      double loss;
      if (t_masked)  // lse - (-inf): +inf, or NaN for a row with NaN
        loss = kw == 0.0 ? 0.0 : (lse != lse ? lse : double(kPosInf));
      else
        loss = lk_times_nonzero(kw, gap_t + log_s_d);
      if (eps_row != T(0)) loss += double(eps_row) * (smooth_gap + double(w_row) * log_s_d);
      a.loss[r * a.loss_stride] = sw * (loss + z_term);
      if (!g) continue;
      const T scale = gs * (keep * w_t + eps_row * w_row + z_grad) / s;
      const T smooth = gs * eps_row;
      const T target_step = gs * keep * w_t;
      const T e_t = e[t];  // (e may be the gradient row, written below)
      if constexpr (kMaskX) {
        if (!m) {
          if (smooth == T(0) && lk_isfinite_scale(scale)) {
            // e is exactly 0 at masked classes, and so is e * scale - 0.
#pragma omp simd
            for (idx c = 0; c < n; ++c) g[c] = lk_st<S>(e[c] * scale - smooth);
            const T v_t = e_t * scale - smooth - target_step;
            g[t] = lk_st<S>(t_masked ? T(0) : v_t);
            continue;
          }
          need_m();
        }
      }
      if (w && eps_row != T(0)) {
#pragma omp simd
        for (idx c = 0; c < n; ++c) g[c] = lk_st<S>(finish(c, e[c] * scale - smooth * w[c]));
      } else {
#pragma omp simd
        for (idx c = 0; c < n; ++c) g[c] = lk_st<S>(finish(c, e[c] * scale - smooth));
      }
      const T v_t = e_t * scale - smooth * (w && eps_row != T(0) ? w[t] : T(1)) - target_step;
      g[t] = lk_st<S>(finish(t, v_t));
      continue;
    }

    double loss;
    if (masked_mass != 0.0)
      loss = lse != lse ? lse : double(kPosInf);
    else
      loss = b_sum == 0.0 ? d_sum : d_sum + b_sum * log_s_d;
    a.loss[r * a.loss_stride] = sw * (loss + z_term);
    if (!g) continue;
    const T scale = gs * (static_cast<T>(b_sum) + z_grad) / s;
    if (w) {
#pragma omp simd
      for (idx c = 0; c < n; ++c) {
        const T ec = kMask ? (m[c] != T(0) ? eps_row : T(0)) : eps_row;
        g[c] = lk_st<S>(finish(c, e[c] * scale - gs * w[c] * (keep * lk_ld(y[c]) + ec)));
      }
    } else {
#pragma omp simd
      for (idx c = 0; c < n; ++c) {
        const T ec = kMask ? (m[c] != T(0) ? eps_row : T(0)) : eps_row;
        g[c] = lk_st<S>(finish(c, e[c] * scale - gs * (keep * lk_ld(y[c]) + ec)));
      }
    }
  }
}

template <class S>
void cross_entropy_rows_options(const CrossEntropyRows<S>& a) {
  const bool cap = a.softcap != compute_t<S>(0);
  if (cap)
    a.mask ? cross_entropy_rows_options_for<S, true, true>(a)
           : cross_entropy_rows_options_for<S, true, false>(a);
  else
    a.mask ? cross_entropy_rows_options_for<S, false, true>(a)
           : cross_entropy_rows_options_for<S, false, false>(a);
}

// Cross-entropy with class indices, vectorized across samples ("columns") instead of
// classes: for short rows (a handful of classes, where a row kernel's fixed cost per row
// dominates) and for a class axis that is not the last one (N x C x H x W).
//
// When the samples are contiguous in the logits and in the gradient (a non-last class
// axis), the block is read in place and the exponentials go straight into the gradient,
// as in lk_normalize_cols; otherwise (short rows: samples a row apart) the block is
// gathered into a contiguous scratch block first and scattered back at the end. Either
// way z_t and the smoothing sums are taken before any gradient is written, so grad_out
// may be the logits themselves.
template <class S, class T = compute_t<S>>
void cross_entropy_cols(const CrossEntropyCols<S>& a) {
  constexpr bool kNarrow = sizeof(S) < sizeof(T);  // as in cross_entropy_rows
  const idx n = a.n;
  const T eps = a.smoothing;
  const T eps_per_class = eps / static_cast<T>(n);
  const T keep = T(1) - eps;
  // Per-sample state of one block, on the heap: about 100 KiB for double, more than a
  // thread's whole stack on musl (128 KiB).
  struct Work {
    T shift[lk_max_column_block];
    double gap_t[lk_max_column_block];       // shift - z_t (in double, as in the rows kernel)
    double smooth_gap[lk_max_column_block];  // sum_c w_c (shift - z_c)
    T w_t[lk_max_column_block];
    T scale[lk_max_column_block];
    T smooth[lk_max_column_block];
    T e_t[kNarrow ? lk_max_column_block : 1];  // the target's exponential (16-bit S)
    S row[lk_max_column_block];
    std::int64_t target[lk_max_column_block];
    bool ignored[lk_max_column_block];
    bool lse_is_inf[lk_max_column_block];
    T counted[lk_max_column_block];  // 1 or 0: !ignored, as T so the gradient loop vectorizes
    LkColumnSums<T> sums;
  };
  Work* const work = &lk_thread_work<Work>();
  T* shift = work->shift;
  double* gap_t = work->gap_t;
  double* smooth_gap = work->smooth_gap;
  T* w_t = work->w_t;
  T* scale = work->scale;
  T* smooth = work->smooth;
  T* e_t = work->e_t;
  S* row = work->row;
  std::int64_t* target = work->target;
  bool* ignored = work->ignored;
  bool* lse_is_inf = work->lse_is_inf;
  T* counted = work->counted;
  LkColumnSums<T>& sums = work->sums;
  const bool direct = a.col_stride == 1 && (!a.grad || a.grad_col_stride == 1);
  const idx block = lk_column_block<S>(n);
  // A gathered block holds n x min(block, cols): three strided rows of 10^7 classes
  // need 3 columns, not the 16 a block holds at least.
  LkScratch<S> scratch(direct ? 0 : n * (a.cols < block ? a.cols : block));
  using E = typename std::conditional<kNarrow, T, S>::type;  // the exponentials' type
  LkScratch<T> exps(kNarrow && a.grad ? n * (a.cols < block ? a.cols : block) : 0);
  for (idx j0 = 0; j0 < a.cols; j0 += block) {
    const idx w = a.cols - j0 < block ? a.cols - j0 : block;
    // Pass 1: each sample's max (gathering the block when it is not read in place).
    const LkBlock<S> zb = lk_block_max(a.logits + j0 * a.col_stride, a.axis_stride,
                                       direct ? idx(1) : a.col_stride, n, w, scratch.data,
                                       shift);
    for (idx j = 0; j < w; ++j) {
      shift[j] = lk_shift_for(shift[j]);
      const std::int64_t t = a.labels[(j0 + j) * a.label_stride];
      // Out of range only if the labels changed since they were validated: skipped.
      ignored[j] = t == a.ignore_index || t < 0 || t >= n;
      counted[j] = ignored[j] ? T(0) : T(1);
      target[j] = ignored[j] ? 0 : t;
      w_t[j] = ignored[j] ? T(0) : (a.weight ? a.weight[t] : T(1));
      const T z_t = lk_ld(zb.base[target[j] * zb.stride + j]);
      gap_t[j] = double(shift[j]) - double(z_t);
      if (kNarrow) e_t[j] = lk_exp_shifted<S>(z_t - shift[j]);
      smooth_gap[j] = 0;
      lse_is_inf[j] = lk_lse_is_inf(shift[j], zb.base + j, n, zb.stride);
    }
    if (eps != T(0)) {
      for (idx c = 0; c < n; ++c) {
        const S* zr = zb.base + c * zb.stride;
        const double wc = a.weight ? double(a.weight[c]) : 1.0;
#pragma omp simd
        for (idx j = 0; j < w; ++j)
          smooth_gap[j] += wc * (double(shift[j]) - double(lk_ld(zr[j])));
      }
    }
    // Pass 2: exponentials and their sums. They are kept where the gradient will be: in
    // the gradient itself when reading in place, else in the scratch block (over the
    // gathered logits, which are no longer needed); for a 16-bit S, unrounded in a block
    // of the compute type (as in cross_entropy_rows).
    S* gb = a.grad ? a.grad + j0 * a.grad_col_stride : nullptr;
    E* eb = nullptr;
    idx e_stride = 0;
    if (a.grad) {
      if constexpr (kNarrow) {
        eb = exps.data;
        e_stride = w;
      } else {
        eb = direct ? gb : scratch.data;
        e_stride = direct ? a.grad_axis_stride : w;
      }
    }
    sums.reset(w);
    T* part = sums.part;
    for (idx c = 0; c < n; ++c) {
      const S* zr = zb.base + c * zb.stride;
      if (eb) {
        E* er = eb + c * e_stride;
#pragma omp simd
        for (idx j = 0; j < w; ++j) {
          const T v = lk_exp_shifted<S>(lk_ld(zr[j]) - shift[j]);
          er[j] = lk_st<E>(v);
          part[j] += v;
        }
      } else {
#pragma omp simd
        for (idx j = 0; j < w; ++j) part[j] += lk_exp_nonpositive(lk_ld(zr[j]) - shift[j]);
      }
      sums.row_done(c);
    }
    sums.flush();
    for (idx j = 0; j < w; ++j) {
      const T s = static_cast<T>(sums.total[j]);
      const T log_s = lk_log_sum(lse_is_inf[j], s);
      double loss = double(keep) * double(w_t[j]) * (gap_t[j] + double(log_s));
      if (eps != T(0))
        loss += double(eps_per_class) * (smooth_gap[j] + double(a.weight_sum) * double(log_s));
      a.loss[(j0 + j) * a.loss_stride] = ignored[j] ? 0.0 : loss;
      scale[j] = a.grad_scale * (keep * w_t[j] + eps_per_class * a.weight_sum) / s;
      smooth[j] = ignored[j] ? T(0) : a.grad_scale * eps_per_class;
    }
    if (!a.grad) continue;
    // Pass 3: the gradient (scattered back when the block was gathered).
    for (idx c = 0; c < n; ++c) {
      const E* er = eb + c * e_stride;
      const T wc = a.weight ? a.weight[c] : T(1);
      S* gr = gb + c * a.grad_axis_stride;
      S* dst = direct ? gr : row;
#pragma omp simd
      for (idx j = 0; j < w; ++j) {
        const T v = lk_ld(er[j]) * scale[j] - smooth[j] * wc;
        dst[j] = lk_st<S>(counted[j] != T(0) ? v : T(0));  // a select, not v * 0: v may be NaN
      }
      if (!direct)
        for (idx j = 0; j < w; ++j) gr[j * a.grad_col_stride] = row[j];
    }
    // The -1 (times the weight) at each sample's target. (Folding it into the pass above
    // as a compare against the class index was measured slower: 8192x10 0.25 -> 0.32 ms.)
    for (idx j = 0; j < w; ++j) {
      if (ignored[j]) continue;
      S& g_t = gb[target[j] * a.grad_axis_stride + j * a.grad_col_stride];
      const T wc = a.weight ? a.weight[target[j]] : T(1);
      const T before = kNarrow ? e_t[j] * scale[j] - smooth[j] * wc : lk_ld(g_t);
      g_t = lk_st<S>(before - a.grad_scale * keep * w_t[j]);
    }
  }
}

// The lane maxima of one vector (L elements) of x, widened, into acc: the next row's
// maximum, taken in the row kernels' loops (softmax_kernels.inl's pipeline).
template <class S, class T = compute_t<S>>
LK_ALWAYS_INLINE void lk_max_into(T* __restrict acc, const S* __restrict x) {
  T v[lk_lanes<T>()];
  lk_load_vector(v, x);
#pragma omp simd
  for (idx j = 0; j < lk_lanes<T>(); ++j) acc[j] = v[j] > acc[j] ? v[j] : acc[j];
}

// Entropy of softmax(z) per row, in nats: H = log s - d / s, s = sum e, d = sum e (z - shift),
// e = exp(z - shift); entries with e = 0 (-inf logits) contribute 0.
//
// One pass over each row, one exp per element, and the next row's maximum taken in the same
// loop (the row pipeline of lk_exp_sum_store: the max only streams the next row in from
// memory while this loop is bound by arithmetic, so it comes nearly free and the next row is
// then read from cache). s and d go into LkSum's two-level sums: float32 lane sums of 4
// vectors, then double (float64: compensated) totals, rather than a conversion to double of
// every term, which doubled the vector operations. Each term e (z - shift) is in
// [-1/e, 0], so 4 of them in float32 lose nothing that matters next to the tolerance.
//
// s is summed in LkSum's split mode (as log_softmax's), which keeps the maximum's term 1
// apart from the tail, so that s - 1 comes out without cancellation and log s is
// log1p(s - 1): a confident row's entropy is the small difference of log s and d / s, both
// near s - 1 (for one logit 20 above 142 others, H = 4.7e-7: with the 1 in the float lane
// sums, s - 1 lost its low bits and H was 5% off on avx512; as a bfloat16 result, 14
// units). `lane` is the maximum's lane (LkMax); *next_max receives the next row's.
//
// With options (Opt, softmax_kernels.inl's LkOpt): u = (z - shift) * scale, left-out
// classes load as -inf (e = 0, no term).
template <bool kNext, class S, class T = compute_t<S>, class Opt = LkPlain<T>>
LK_ALWAYS_INLINE void lk_entropy_row(const S* __restrict z, idx n, T shift, idx lane,
                                     const S* __restrict next, LkMax<T>* next_max,
                                     double* s_minus_one_out, double* d_out,
                                     const Opt& o = Opt()) {
  constexpr idx L = lk_lanes<T>();
  constexpr bool kMask = Opt::masked;
  T saved[LkSum<T, true, S>::kSumBlock * L];
  LkSum<T, true, S> s(lane);
  LkSum<T> d;
  T e[L], t[L], macc[L];
  for (idx j = 0; j < L; ++j) macc[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
    T zv[L];
    lk_load_opt<kMask>(zv, z + i, lk_mask_at<kMask>(o.m, i));
#pragma omp simd
    for (idx j = 0; j < L; ++j) {
      const T u = o.u(zv[j] - shift);
      const T v = lk_exp_nonpositive(u);
      e[j] = v;
      t[j] = v == T(0) ? T(0) : v * u;  // -inf logits contribute 0 (not 0 * -inf)
    }
    s.add(e, saved, z, n, shift, i);
    d.add(t);
    if (kNext) {
      if constexpr (kMask) {
        T nv[L];
        lk_load_opt<kMask>(nv, next + i, o.next_m + i);
#pragma omp simd
        for (idx j = 0; j < L; ++j) macc[j] = nv[j] > macc[j] ? nv[j] : macc[j];
      } else {
        lk_max_into(macc, next + i);
      }
    }
  }
  if (i < n) {
    T block[L];
    lk_load_padded_opt<kMask>(block, z + i, lk_mask_at<kMask>(o.m, i), n - i);
#pragma omp simd
    for (idx j = 0; j < L; ++j) {
      const T u = o.u(block[j] - shift);
      const T v = lk_exp_nonpositive(u);
      e[j] = v;
      t[j] = v == T(0) ? T(0) : v * u;
    }
    s.add(e, saved, z, n, shift, i);
    d.add(t);
    if (kNext) {
      lk_load_padded_opt<kMask>(block, next + i, lk_mask_at<kMask>(o.next_m, i), n - i);
      lk_max_into(macc, block);
    }
  }
  if (kNext) *next_max = lk_reduce_max_lane(macc);
  *s_minus_one_out = s.result_minus_one(saved, z, n, shift);
  *d_out = d.total_sum();
}

// With options: the entropy of softmax(z * scale) over the included classes; a row with
// none included has entropy 0 (an empty sum).
template <class S, class Opt = LkPlain<compute_t<S>>>
void entropy_rows_for(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows, idx n,
                      const Opt& base = Opt(), idx mask_row_stride = 0) {
  using T = compute_t<S>;
  if (rows <= 0) return;
  LkMax<T> m = lk_row_max_lane<Opt::masked>(x, n, base.m);
  for (idx r = 0; r < rows; ++r) {
    const S* z = x + r * x_row_stride;
    Opt o = base;
    if constexpr (Opt::masked) {
      o.m = base.m + r * mask_row_stride;
      o.next_m = r + 1 < rows ? o.m + mask_row_stride : o.m;
    }
    const T shift = lk_shift_for(m.value);
    const bool empty = lk_fully_masked(o, m.value, n);
    double s_minus_one = 0, d = 0;
    if (r + 1 < rows)
      lk_entropy_row<true>(z, n, shift, m.lane, z + x_row_stride, &m, &s_minus_one, &d, o);
    else
      lk_entropy_row<false>(z, n, shift, m.lane, z, &m, &s_minus_one, &d, o);
    out[r * out_stride] =
        empty ? lk_st<S>(T(0))
              : lk_st<S>(static_cast<T>(lk_log1p(s_minus_one) - d / (1.0 + s_minus_one)));
  }
}

template <class S>
void entropy_rows(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows, idx n) {
  entropy_rows_for<S>(x, x_row_stride, out, out_stride, rows, n);
}

template <class S>
void entropy_rows_opt(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows, idx n,
                      const RowOptions<S>& a) {
  lk_with_opt(a, [&](const auto& o) {
    using Opt = std::decay_t<decltype(o)>;
    entropy_rows_for<S, Opt>(x, x_row_stride, out, out_stride, rows, n, o, a.mask_row_stride);
  });
}

// KL(P || Q) per row from logits p and q: sum_c p_c (log p_c - log q_c)
//   = acc / sp - (log sp - log sq),  acc = sum_c ep_c ((zp_c - shift_p) - (zq_c - shift_q)),
// ep, eq the shifted exponentials and sp, sq their sums. With a gradient row, also
// d KL / d zq = softmax(zq) - softmax(zp) = eq / sq - ep / sp, times grad_scale.
//
// One pass over both inputs with one exp per element and input, the next rows' maxima taken
// in the same loop (as in entropy), the sums in LkSum's two-level sums. The gradient needs
// sp and sq, known only at the end of the row: the pass stores ep and eq in scratch (a row
// of each), and a second loop scales them into the gradient, no exp taken twice, for rows
// whose scratch takes at most 12 KiB (1536 float32 / 768 float64 classes); longer rows take
// the exps again in the gradient loop, which measured faster once the scratch, with the
// rows and the next rows, no longer fits in L1 (CPU time / memcpy, medians of 6 processes,
// store vs recompute; float32: 64x1000 in cache 10.6x vs 13.6x, 4096x1000 3.8x vs 4.2x,
// 2730x1500 4.3x vs 4.2x, 2048x2000 5.6x vs 4.0x, 512x8000 5.1x vs 4.5x, 64x128256 4.2x vs
// 3.6x, 16x1048576 4.4x vs 3.3x; float64: 64x1000 12.0x vs 19.5x, 4096x500 4.8x vs 6.9x,
// 4096x750 5.4x vs 6.2x, 4096x1000 5.9-6.4x vs 6.0-6.1x). (Storing eq in the gradient row
// itself, to fetch its cache lines in the loop bound by arithmetic, as softmax does,
// measured slower: 3.9x vs 3.5x at 4096x1000; so did prefetching the gradient row for
// writing.)
//
// The log ratios are taken in T (float32 for float32 logits), and acc summed in LkSum, where
// that cannot overflow: a row whose acc comes out infinite or NaN (logits of +-1e38 in
// float32, where a difference, or 4 of them summed in a lane, can pass float32's range; of
// +-1e307 in float64, where sum ep (up - uq) can pass float64's even though sum p (up - uq)
// does not) is summed again in double, the differences exact and each term weighted by p,
// in a loop of its own (rare: such logits are not seen in practice). (Classes that Q rules
// out do not make acc infinite: see lk_kl_excluded.) zp - shift_p needs no check: where it
// is below -88 (-709), ep is 0 and the difference unused.
template <class T>
struct LkKlRow {
  double sp, sq, acc;
  bool excluded;  // a class that Q rules out and P does not (see lk_kl_excluded)
};

// One class's term of acc, ep (up - uq), and whether Q rules the class out (zq = -inf)
// where P does not: that makes the divergence +inf, also where exp flushed p_c (below the
// smallest normal number) to 0; as in the float64 formula, a p_c below double's smallest
// subnormal (e^-745) counts as 0. (Where ep > 0 the term itself is then +inf.) The rows
// kernel keeps the largest up of such classes in a lane maximum instead of selecting +inf
// into the terms: 4 vector operations fewer per vector.
template <class T>
LK_ALWAYS_INLINE T lk_kl_term(T ep, T up, T uq) {
  return ep == T(0) ? T(0) : ep * (up - uq);  // not 0 * inf
}
template <class T>
LK_ALWAYS_INLINE bool lk_kl_excluded(T up, T zq) {
  return zq == lk_neg_inf<T>() && up > T(-745.2);
}

// With options (LkOpt): up, uq scaled after the shift; left-out classes load as -inf in
// both rows (p_c = 0: no term, and not a class that Q rules out: up = -inf).
template <bool kNext, bool kGrad, class S, class T = compute_t<S>, class Opt = LkPlain<T>>
LK_ALWAYS_INLINE LkKlRow<T> lk_kl_row(const S* __restrict zp, const S* __restrict zq, idx n,
                                      T shift_p, T shift_q, T* __restrict ep_out,
                                      T* __restrict eq_out, const S* __restrict next_p,
                                      const S* __restrict next_q, T* next_max_p,
                                      T* next_max_q, const Opt& o = Opt()) {
  constexpr idx L = lk_lanes<T>();
  constexpr bool kMask = Opt::masked;
  LkSum<T> sp, sq, acc;
  T ep[L], eq[L], term[L], mp[L], mq[L], out_max[L];
  for (idx j = 0; j < L; ++j) mp[j] = lk_neg_inf<T>();
  for (idx j = 0; j < L; ++j) mq[j] = lk_neg_inf<T>();
  for (idx j = 0; j < L; ++j) out_max[j] = lk_neg_inf<T>();
  idx i = 0;
  for (; i + L <= n; i += L) {
    T pv[L], qv[L];
    lk_load_opt<kMask>(pv, zp + i, lk_mask_at<kMask>(o.m, i));
    lk_load_opt<kMask>(qv, zq + i, lk_mask_at<kMask>(o.m, i));
#pragma omp simd
    for (idx j = 0; j < L; ++j) {
      const T xq = qv[j];
      const T up = o.u(pv[j] - shift_p);
      const T uq = o.u(xq - shift_q);
      const T vp = lk_exp_shifted<S>(up);
      const T vq = lk_exp_shifted<S>(uq);
      ep[j] = vp;
      eq[j] = vq;
      // The largest up where Q rules the class out. Such a class's term is taken with
      // uq = 0 instead of -inf: +inf would send the row to the double loop (and in LkSum's
      // compensated float64 sums make NaN), and the row's divergence is +inf anyway where
      // its p_c is not 0 (the term is 0 where it is).
      const bool q_out = xq == lk_neg_inf<T>();
      const T up_out = q_out ? up : lk_neg_inf<T>();
      term[j] = lk_kl_term(vp, up, q_out ? T(0) : uq);
      out_max[j] = up_out > out_max[j] ? up_out : out_max[j];
    }
    sp.add(ep);
    sq.add(eq);
    acc.add(term);
    if (kGrad) {
#pragma omp simd
      for (idx j = 0; j < L; ++j) {
        ep_out[i + j] = ep[j];
        eq_out[i + j] = eq[j];
      }
    }
    if (kNext) {
      if constexpr (kMask) {
        T nv[L];
        lk_load_opt<kMask>(nv, next_p + i, o.next_m + i);
        lk_max_into(mp, nv);
        lk_load_opt<kMask>(nv, next_q + i, o.next_m + i);
        lk_max_into(mq, nv);
      } else {
        lk_max_into(mp, next_p + i);
        lk_max_into(mq, next_q + i);
      }
    }
  }
  if (i < n) {
    T bp[L], bq[L];
    lk_load_padded_opt<kMask>(bp, zp + i, lk_mask_at<kMask>(o.m, i), n - i);
    lk_load_padded_opt<kMask>(bq, zq + i, lk_mask_at<kMask>(o.m, i), n - i);
#pragma omp simd
    for (idx j = 0; j < L; ++j) {
      const T xq = bq[j];
      const T up = o.u(bp[j] - shift_p);
      const T uq = o.u(xq - shift_q);
      const T vp = lk_exp_shifted<S>(up);
      const T vq = lk_exp_shifted<S>(uq);
      ep[j] = vp;
      eq[j] = vq;
      // The largest up where Q rules the class out. Such a class's term is taken with
      // uq = 0 instead of -inf: +inf would send the row to the double loop (and in LkSum's
      // compensated float64 sums make NaN), and the row's divergence is +inf anyway where
      // its p_c is not 0 (the term is 0 where it is).
      const bool q_out = xq == lk_neg_inf<T>();
      const T up_out = q_out ? up : lk_neg_inf<T>();
      term[j] = lk_kl_term(vp, up, q_out ? T(0) : uq);
      out_max[j] = up_out > out_max[j] ? up_out : out_max[j];
    }
    sp.add(ep);
    sq.add(eq);
    acc.add(term);
    if (kGrad) {
      for (idx j = 0; j < n - i; ++j) {
        ep_out[i + j] = ep[j];
        eq_out[i + j] = eq[j];
      }
    }
    if (kNext) {
      lk_load_padded_opt<kMask>(bp, next_p + i, lk_mask_at<kMask>(o.next_m, i), n - i);
      lk_max_into(mp, bp);
      lk_load_padded_opt<kMask>(bq, next_q + i, lk_mask_at<kMask>(o.next_m, i), n - i);
      lk_max_into(mq, bq);
    }
  }
  if (kNext) {
    *next_max_p = lk_reduce_max(mp);
    *next_max_q = lk_reduce_max(mq);
  }
  return {sp.total_sum(), sq.total_sum(), acc.total_sum(),
          lk_kl_excluded(lk_reduce_max(out_max), lk_neg_inf<T>())};
}

// sum_c p_c (up_c - uq_c) of one row in double, the differences exact and each term
// weighted by p_c = ep_c / sp rather than ep_c: for rows whose log ratios are too large for
// the pass's sums (see kl_divergence_rows).
// (With options: the differences scaled, left-out classes skipped.)
template <class S, class Opt = LkPlain<compute_t<S>>>
double lk_kl_weighted_double(const S* zp, const S* zq, idx n, double shift_p, double shift_q,
                             double sp, const Opt& o = Opt()) {
  const double inv_sp = 1.0 / sp;
  const double scale = Opt::scaled ? double(o.scale) : 1.0;
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (idx c = 0; c < n; ++c) {
    const bool in = !Opt::masked || lk_mask_at<Opt::masked>(o.m, c)[0] != 0;
    const double xq = in ? double(lk_ld(zq[c])) : lk_neg_inf<double>();
    const double up = in ? (double(lk_ld(zp[c])) - shift_p) * scale : lk_neg_inf<double>();
    const double ep = double(lk_exp_nonpositive(static_cast<compute_t<S>>(up)));
    const double term = lk_kl_term(ep * inv_sp, up, (xq - shift_q) * scale);
    acc += lk_kl_excluded(up, xq) ? -lk_neg_inf<double>() : term;
  }
  return acc;
}

constexpr idx lk_kl_store_bytes = 12288;

// With options (KlRows' scale and mask; LkOpt): the divergence of softmax(p * scale) from
// softmax(q * scale) over the included classes (grad_scale carries the 1/T of the raw
// logits' gradient); a row with no class included has divergence 0 and gradient 0.
template <class S, class Opt = LkPlain<compute_t<S>>>
void kl_rows_for(const KlRows<S>& a, const Opt& base = Opt()) {
  using T = compute_t<S>;
  constexpr bool kMask = Opt::masked;
  const idx n = a.n;
  if (a.rows <= 0) return;
  // The row's exponentials, for its gradient (ep, then eq), where they fit in L1 next to
  // the rows (see above); longer rows take them again in the gradient loop.
  const bool store = a.grad && 2 * n * idx(sizeof(T)) <= lk_kl_store_bytes;
  LkScratch<T> scratch(store ? 2 * n : 0);
  T* ep = scratch.data;
  T* eq = store ? scratch.data + n : nullptr;
  T mp = lk_row_max<kMask>(a.p_logits, n, base.m);
  T mq = lk_row_max<kMask>(a.q_logits, n, base.m);
  for (idx r = 0; r < a.rows; ++r) {
    const S* zp = a.p_logits + r * a.p_row_stride;
    const S* zq = a.q_logits + r * a.q_row_stride;
    Opt o = base;
    if constexpr (kMask) {
      o.m = base.m + r * a.mask_row_stride;
      o.next_m = r + 1 < a.rows ? o.m + a.mask_row_stride : o.m;
    }
    const bool empty = lk_fully_masked(o, mp, n);
    const T shift_p = lk_shift_for(mp);
    const T shift_q = lk_shift_for(mq);
    const bool next = r + 1 < a.rows;
    const S* np = next ? zp + a.p_row_stride : zp;
    const S* nq = next ? zq + a.q_row_stride : zq;
    LkKlRow<T> k;
    if (store)
      k = next ? lk_kl_row<true, true>(zp, zq, n, shift_p, shift_q, ep, eq, np, nq, &mp, &mq, o)
               : lk_kl_row<false, true>(zp, zq, n, shift_p, shift_q, ep, eq, np, nq, &mp, &mq, o);
    else
      k = next ? lk_kl_row<true, false>(zp, zq, n, shift_p, shift_q, ep, eq, np, nq, &mp, &mq, o)
               : lk_kl_row<false, false>(zp, zq, n, shift_p, shift_q, ep, eq, np, nq, &mp, &mq, o);
    if (kMask && LK_UNLIKELY(empty)) {
      a.out[r * a.out_stride] = 0;
      if (a.grad) {
        S* g = a.grad + r * a.grad_row_stride;
        for (idx c = 0; c < n; ++c) g[c] = lk_st<S>(T(0));
      }
      continue;
    }
    // acc / sp: the mean log ratio under P.
    double mean_ratio = k.acc / k.sp;
    if (!(k.acc - k.acc == 0.0)) {
      // Log ratios that the pass's sums did not hold (or NaN): again in double, weighted
      // by p. (The inputs are intact: the gradient, which may be written over one of them,
      // is written below.)
      mean_ratio = lk_kl_weighted_double(zp, zq, n, double(shift_p), double(shift_q), k.sp, o);
    }
    if (k.excluded) mean_ratio -= lk_neg_inf<double>();
    // Scaled (to the logarithm's base) in double: a float32 divergence in nats may exceed
    // float32's range where the same in bits does not.
    a.out[r * a.out_stride] = (mean_ratio - (lk_log(k.sp) - lk_log(k.sq))) * a.out_scale;
    if (a.grad) {
      S* g = a.grad + r * a.grad_row_stride;
      const T inv_p = static_cast<T>(double(a.grad_scale) / k.sp);
      const T inv_q = static_cast<T>(double(a.grad_scale) / k.sq);
      if (store) {
        const T* e_p = ep;
        lk_write_row(g, eq, static_cast<const S*>(nullptr), n,
                     [=](T e_q, T, idx c) { return e_q * inv_q - e_p[c] * inv_p; });
      } else if constexpr (kMask) {
        const std::uint8_t* mr = o.m;
        lk_map_rows2(zq, zp, g, n, [=](T xq, T xp, idx c) {
          const T v = lk_exp_shifted<S>(o.u(xq - shift_q)) * inv_q -
                      lk_exp_shifted<S>(o.u(xp - shift_p)) * inv_p;
          return mr[c] != 0 ? v : T(0);
        });
      } else {
        lk_map_rows2(zq, zp, g, n, [=](T xq, T xp, idx) {
          return lk_exp_shifted<S>(o.u(xq - shift_q)) * inv_q -
                 lk_exp_shifted<S>(o.u(xp - shift_p)) * inv_p;
        });
      }
    }
  }
}

template <class S>
void kl_divergence_rows(const KlRows<S>& a) {
  using T = compute_t<S>;
  if (a.mask && a.scaled) {
    kl_rows_for<S>(a, LkOpt<T, true, true>{a.scale, a.mask, nullptr});
  } else if (a.mask) {
    kl_rows_for<S>(a, LkOpt<T, false, true>{a.scale, a.mask, nullptr});
  } else if (a.scaled) {
    kl_rows_for<S>(a, LkOpt<T, true, false>{a.scale, nullptr, nullptr});
  } else {
    kl_rows_for<S>(a);
  }
}

// Backward products for rows of C classes (all rows contiguous).
//   softmax:     dx = p * (g - sum(g * p))
//   log_softmax: dx = g - exp(logp) * sum(g)
// Each row takes two loops: its reduction, then the products, on the row in cache. out may
// be either input (in place): each row is read in full before any of it is written.
// (Taking the next row's reduction inside this row's product loop, as the row kernels take
// the next row's maximum, measured slower here: float32 4096x1000 softmax_backward
// 1.42x -> 1.76x memcpy, log_softmax_backward 1.69x -> 1.94x, CPU time.)

// The reductions of one row: softmax: dot = sum g p (in double: a float sum over 32000
// classes is off by ~1e-6 relative) and max |g|; log_softmax: sum g (in double) and max logp.
template <class T>
struct LkBackwardRow {
  double sum;
  T max;
};

template <bool kLog, class S, class T = compute_t<S>>
inline LkBackwardRow<T> lk_backward_reduce(const S* gr, const S* yr, idx n) {
  double sum = 0;
  T mx = kLog ? lk_neg_inf<T>() : T(0);
#pragma omp simd reduction(+ : sum) reduction(max : mx)
  for (idx c = 0; c < n; ++c) {
    const T gv = lk_ld(gr[c]);
    const T yv = lk_ld(yr[c]);
    if (kLog) {
      sum += double(gv);
      mx = yv > mx ? yv : mx;
    } else {
      sum += double(gv) * double(yv);
      const T a = gv < T(0) ? -gv : gv;
      mx = a > mx ? a : mx;
    }
  }
  return {sum, mx};
}

template <bool kLog, class S>
void lk_backward_rows(const S* g, idx g_rs, const S* y, idx y_rs, S* out, idx out_rs,
                      idx rows, idx n) {
  using T = compute_t<S>;
  for (idx r = 0; r < rows; ++r) {
    const S* gr = g + r * g_rs;
    const S* yr = y + r * y_rs;
    S* o = out + r * out_rs;
    const LkBackwardRow<T> red = lk_backward_reduce<kLog>(gr, yr, n);
    const double sum = red.sum;
    const T k = static_cast<T>(sum);
    bool fast;
    if (kLog) {
      // Log-probabilities (<= 0) with a sum(g) that fits T: in T, exp <= 1 so nothing
      // overflows that the result does not. Anything else (float32 sum(g) past float32's
      // range or infinite, log_probs above 0: not log-probabilities, whose exp may
      // overflow float32) in double, as the float64 formula: exp(89) * 0 is 0 (not
      // inf * 0 = NaN), exp(-108) * inf is inf (not 0 * inf = NaN). The general exp, not
      // the kernels' one for arguments <= 0, which is wrong above 0.
      fast = red.max <= T(0) && k - k == T(0);
    } else {
      // g - dot leaves float32's range for float32 g = +-3e38 although p * (g - dot) does
      // not: such rows are computed in double, the others (|g| + |dot| < max) in T.
      fast = double(red.max) + (sum < 0 ? -sum : sum) <= double(lk_max_finite<T>());
    }
    if (fast) {
      lk_map_rows2(gr, yr, o, n, [=](T gv, T yv, idx) {
        return kLog ? gv - lk_exp(yv) * k : yv * (gv - k);
      });
    } else {
      lk_map_rows2(gr, yr, o, n, [=](T gv, T yv, idx) {
        const double gd = double(gv), yd = double(yv);
        return static_cast<T>(kLog ? gd - lk_exp(yd) * sum : yd * (gd - sum));
      });
    }
  }
}

template <class S>
void softmax_backward_rows(const S* g, idx g_rs, const S* p, idx p_rs, S* out, idx out_rs,
                           idx rows, idx n) {
  lk_backward_rows<false>(g, g_rs, p, p_rs, out, out_rs, rows, n);
}

template <class S>
void log_softmax_backward_rows(const S* g, idx g_rs, const S* logp, idx logp_rs, S* out,
                               idx out_rs, idx rows, idx n) {
  lk_backward_rows<true>(g, g_rs, logp, logp_rs, out, out_rs, rows, n);
}
