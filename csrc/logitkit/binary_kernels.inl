// Elementwise kernels of the binary (sigmoid) family: sigmoid, log_sigmoid and binary
// cross-entropy from logits with its fused gradient.
//
// Included only from kernels_target.cpp inside the per-target namespace, after exp.inl.
//
// Everything is written in terms of t = exp(-|x|) in (0, 1], which never overflows:
//   sigmoid(x)     = 1 / (1 + t)           for x >= 0,   t / (1 + t) for x < 0
//   log_sigmoid(x) = min(x, 0) - log1p(t)
// so sigmoid(+-inf) = 1 / 0, log_sigmoid(-1000) = -1000 exactly, and NaN stays NaN.

// log1p(t) for t in [0, 1] as 2 atanh(s), s = t / (2 + t) in [0, 1/3]: an odd series in s
// with no cancellation for tiny t (log1p(t) ~ t). Truncation error < 2e-8 (float, to s^15)
// and < 2e-17 (double, to s^35) relative; measured <= 2 ulp.
inline float lk_log1p_unit(float t) {
  const float s = t / (2.0f + t);
  const float s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  return 2.0f * s + 2.0f * s * s2 * p;
}

inline double lk_log1p_unit(double t) {
  const double s = t / (2.0 + t);
  const double s2 = s * s;
  double p = 1.0 / 35.0;
  for (int k = 33; k >= 3; k -= 2) p = p * s2 + 1.0 / k;
  return 2.0 * s + 2.0 * s * s2 * p;
}

template <class S, class T>
inline T lk_sigmoid(T x) {
  const T ax = x < T(0) ? -x : x;
  const T t = lk_exp_shifted<S>(-ax);
  const T inv = T(1) / (T(1) + t);
  return x >= T(0) ? inv : t * inv;
}

// log_sigmoid(x) = min(x, 0) - log1p(e^-|x|), to about 1 ulp (SciPy's log_expit is within
// 1 ulp). Unlike the other binary kernels, which use lk_exp_nonpositive (up to 5 ulp for
// float, results below the normal range flushed), this takes the general exp:
//   - float: computed in double (to a relative 2^-36) and rounded once: within 0.5 ulp +
//     2^-12 ulp (measured: correctly rounded on the test grids), subnormal results (x above
//     87) included.
//   - double: t = e^-|x| as hi + lo (lk_exp_hi_lo), s = t / (2 + t) as hi + lo (exact
//     residual of the division), log1p(t) = 2 atanh(s) summed as hi + lo, and min(x, 0)
//     added with TwoSum: measured <= 1 ulp. Above |x| = 40, log1p(t) = t to double
//     precision: log_sigmoid(x) = -e^-x, subnormal down to x = 745 (SciPy's values), and
//     x - e^x below -40.
// log_sigmoid(+inf) = -0.0 as in SciPy (the log of a probability of 1 from below),
// log_sigmoid(-inf) = -inf, NaN stays NaN.
inline float lk_log_sigmoid(float x) {
  // In double with polynomials cut to what a float result needs (relative 2^-39 instead
  // of 2^-53; the FMA units bound this loop, a float32 vector being two double vectors):
  // e^-|x| as lk_exp with one reduction step (n ln2 rounded costs 2^-46 relative for
  // |n| <= 160, with or without FMA) and a degree-8 Chebyshev fit of e^r (2^-40; |x| <= 110
  // keeps the result normal: one scale factor), log1p(t) as 2 atanh(s) with a degree-6
  // Chebyshev fit in s^2 (2^-37 relative, of a term at most 1/27 of the result).
  const double xd = x;
  double y = xd < 0.0 ? xd : -xd;
  y = y < -110.0 ? -110.0 : y;  // e^-110 rounds to 0 as a float result; NaN passes
  const double shifter = 6755399441056767.0;  // 1.5 * 2^52 + 1023
  const double t0 = y * 1.4426950408889634074 + shifter;
  const double n = t0 - shifter;
  const double scale = lk_bit_cast<double>(lk_bit_cast<std::uint64_t>(t0) << 52);
  const double r = y - n * 0.6931471805599453;
  double p = 2.487616445358005e-05;
  p = p * r + 0.00019915867357972;
  p = p * r + 0.0013888821676853941;
  p = p * r + 0.008333266097172774;
  p = p * r + 0.041666666890960886;
  p = p * r + 0.16666666891049664;
  p = p * r + 0.4999999999979793;
  p = p * r + 0.9999999999797847;
  p = p * r + 1.0;
  const double t = p * scale;
  const double s = t / (2.0 + t);
  const double s2 = s * s;
  double q = 0.09532894472904432;
  q = q * s2 + 0.07223047417690645;
  q = q * s2 + 0.0912765172439636;
  q = q * s2 + 0.11109655860158806;
  q = q * s2 + 0.1428574151703626;
  q = q * s2 + 0.1999999980990146;
  q = q * s2 + 0.33333333333549087;
  const double log1p_t = 2.0 * s + 2.0 * s * s2 * q;
  // -(log1p(t) - min(x, 0)) rather than min(x, 0) - log1p(t): -0.0 at +inf
  return static_cast<float>(-(log1p_t - (xd < 0.0 ? xd : 0.0)));
}

inline double lk_log_sigmoid(double x) {
  const double ax = x < 0.0 ? -x : x;
  double tl;
  const double th = lk_exp_hi_lo(-ax, tl);
  // s = t / (2 + t) = sh + sl
  const double d = 2.0 + th;
  const double dl = (2.0 - d) + th;  // exact: 2 >= th
  const double sh = th / d;
  const double q = sh * d;
  const double rho = (th - q) - lk_product_error(sh, d, q);  // th - sh * d, exact
  const double sl = ((rho - sh * dl) + tl) / d;
  // log1p(t) = 2 s + 2 s^3 P(s^2), s <= 1/3: P a degree-10 Chebyshev fit of
  // 1/3 + s^2/5 + ... (relative 2^-58 of a term at most 1/27 of the result; the Taylor
  // series needs 17 terms for that)
  const double s2 = sh * sh;
  double p = 0.07815288900461426;
  p = p * s2 + 0.03746071897775383;
  p = p * s2 + 0.05422589197440007;
  p = p * s2 + 0.05867139530651599;
  p = p * s2 + 0.06667589315724629;
  p = p * s2 + 0.07692271982430275;
  p = p * s2 + 0.09090909948981357;
  p = p * s2 + 0.11111111099118386;
  p = p * s2 + 0.1428571428580005;
  p = p * s2 + 0.19999999999999762;
  p = p * s2 + 0.3333333333333333;
  const double hi = 2.0 * sh;
  const double lo = 2.0 * sl + 2.0 * sh * s2 * p;
  // min(x, 0) - (hi + lo): TwoSum of x and -hi, then the low parts.
  const double m = x < 0.0 ? x : 0.0;
  const double sum = m - hi;
  const double bv = sum - m;
  const double err = (m - (sum - bv)) + (-hi - bv);
  const double inner = x < 0.0 ? sum + (err - lo) : -(hi + lo);
  const double tail = x < 0.0 ? x - th : -th;  // |x| > 40: log1p(t) = t to 0.02 ulp
  return ax > 40.0 ? tail : inner;
}

// log1p(t) for t in [0, 1] without a division, for the loss of binary_cross_entropy:
// t + t^2 P(t), P of degree 7 fitted for relative error by linear programming (2.5e-8
// before rounding; measured <= 2.3 ulp in float without FMA). Exact 0 at t = 0, ~t for
// tiny t. Cheaper than lk_log1p_unit (a division and 9 operations) where sigmoid's
// 1 / (1 + t) is not needed, or is needed next to it: a second division would cost more
// than these two extra FMAs.
inline float lk_log1p_unit_poly(float t) {
  float p = 0.00561311561614275f;
  p = p * t - 0.031016046181321144f;
  p = p * t + 0.08066544681787491f;
  p = p * t - 0.13869236409664154f;
  p = p * t + 0.19203481078147888f;
  p = p * t - 0.24868708848953247f;
  p = p * t + 0.33322638273239136f;
  p = p * t - 0.499997079372406f;
  return (t * t) * p + t;
}

// log1p(t) = 2 atanh(s) for s = t / (2 + t) in [0, 1/3], given s: 2s + 2s^3 P(s^2), P a
// Chebyshev fit of degree 8 in s^2 (relative 4.8e-15; the s^3 term is at most 1/27 of the
// result, so its share of the error is below 2e-16). Half the terms of lk_log1p_unit's
// Taylor series.
inline double lk_log1p_from_s(double s) {
  const double z = s * s;
  double p = 0.08435350330548605;
  p = p * z + 0.05161334635249541;
  p = p * z + 0.0675117123587855;
  p = p * z + 0.07686637438179002;
  p = p * z + 0.09091130554209872;
  p = p * z + 0.11111106278964857;
  p = p * z + 0.14285714338330496;
  p = p * z + 0.19999999999780063;
  p = p * z + 0.33333333333333487;
  return 2.0 * s + (2.0 * s) * z * p;
}

// log1p(e^-|x|) (softplus(-|x|)) and, when kSigmoid, sigmoid(x), for binary
// cross-entropy: t = e^-|x| once, then
//   float:  log1p(t) by lk_log1p_unit_poly, sigmoid with one division;
//   double: the atanh form of log1p (as lk_log1p_unit), whose s = t / (2 + t) shares the
//           division with 1 / (1 + t): q = 1 / ((1 + t)(2 + t)), so one vdivpd instead
//           of two (each as expensive as ~10 FMAs on AVX-512).
// |x| and -|x| as one bit operation each (x < 0 ? -x : x is a compare and a blend).
inline float lk_abs(float x) {
  return lk_bit_cast<float>(lk_bit_cast<std::uint32_t>(x) & 0x7fffffffu);
}
inline double lk_abs(double x) {
  return lk_bit_cast<double>(lk_bit_cast<std::uint64_t>(x) & 0x7fffffffffffffffu);
}
inline float lk_neg_abs(float x) {
  return lk_bit_cast<float>(lk_bit_cast<std::uint32_t>(x) | 0x80000000u);
}
inline double lk_neg_abs(double x) {
  return lk_bit_cast<double>(lk_bit_cast<std::uint64_t>(x) | 0x8000000000000000u);
}

// S: the storage type the sigmoid is written as (lk_exp_shifted).
template <bool kSigmoid, class S = float>
inline float lk_softplus_sigmoid(float x, float& sig) {
  const float t = lk_exp_shifted<S>(lk_neg_abs(x));
  if (kSigmoid) {
    const float inv = 1.0f / (1.0f + t);
    sig = x >= 0.0f ? inv : t * inv;
  }
  return lk_log1p_unit_poly(t);
}

template <bool kSigmoid, class S = double>
inline double lk_softplus_sigmoid(double x, double& sig) {
  const double t = lk_exp_nonpositive(lk_neg_abs(x));
  double s;
  if (kSigmoid) {
    const double d1 = 1.0 + t;
    const double d2 = 2.0 + t;
    const double q = 1.0 / (d1 * d2);
    const double inv = d2 * q;
    sig = x >= 0.0 ? inv : t * inv;
    s = t * (d1 * q);
  } else {
    s = t / (2.0 + t);
  }
  return lk_log1p_from_s(s);
}

template <class S>
void sigmoid_array(const S* x, S* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_st<S>(lk_sigmoid<S>(lk_ld(x[i])));
}

// log_sigmoid for elements stored as S: to ~1 ulp of S. 16-bit formats, whose rounding
// (2^-9 or 2^-12) swamps a few float ulp, skip the extended precision of
// lk_log_sigmoid(float): min(x, 0) - log1p(e^-|x|) in float, as binary cross-entropy.
template <class S>
inline compute_t<S> lk_log_sigmoid_of(compute_t<S> x) {
  return lk_log_sigmoid(x);
}
inline float lk_log_sigmoid_short(float x) {
  float unused;
  const float sp = lk_softplus_sigmoid<false>(x, unused);
  return -(sp - (x < 0.0f ? x : 0.0f));  // -0.0 at +inf, as lk_log_sigmoid
}
template <>
inline float lk_log_sigmoid_of<Float16>(float x) {
  return lk_log_sigmoid_short(x);
}
template <>
inline float lk_log_sigmoid_of<BFloat16>(float x) {
  return lk_log_sigmoid_short(x);
}

template <class S>
void log_sigmoid_array(const S* x, S* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_st<S>(lk_log_sigmoid_of<S>(lk_ld(x[i])));
}

// Binary cross-entropy from logits (PyTorch's BCEWithLogits), for `rows` contiguous rows of
// n elements: z, y, and the optional full-size weight w share one layout; the optional
// pos_weight pw is either one row of n (per class) shared by all rows, or full-size.
//   loss = w (pw y A + (1 - y) B),  A = -log sigmoid(z) = log1p(e^-|z|) - min(z, 0),
//                                   B = -log sigmoid(-z) = log1p(e^-|z|) + max(z, 0)
//   grad = w ((pw y + 1 - y) sigmoid(z) - pw y) * grad_scale
// A zero coefficient never meets an infinite log (z = +-inf with a target of 0 or 1 gives
// 0, not NaN). Returns the sum of the losses; stores them to loss_out unless it is null.
// One instantiation per combination of options, so that the loop has no pointer test
// and vectorizes (testing nullable pointers per element kept it scalar: ~10 ns each).
//
// One term of the loss: c1 * (c2 * (c3 * v)) with the factors that are not needed being
// 1 (compile-time), and 0 when any factor is 0, whatever v is. Multiplied into v one at a
// time rather than as a product of the factors, so that an infinite v stays infinite when
// the product of the factors would underflow to 0 (and 0 * inf give NaN).
template <class T>
inline T lk_bce_term(bool zero, T c1, T c2, T c3, T v) {
  return zero ? T(0) : c1 * (c2 * (c3 * v));
}

// The loss of one element in double from the compute type's A and B (the products
// cannot overflow or underflow): for the elements whose float loss overflowed, see
// bce_rows_for.
template <class T>
inline double lk_bce_loss_double(T x, T y, T w, T pw) {
  T sig;
  const T sp = lk_softplus_sigmoid<false>(x, sig);
  const T a = sp - (x < T(0) ? x : T(0));
  const T b = sp + (x < T(0) ? T(0) : x);
  const double w_pos = double(w) * double(pw) * double(y);
  const double w_neg = double(w) * double(T(1) - y);
  return (w_pos == 0.0 ? 0.0 : w_pos * double(a)) + (w_neg == 0.0 ? 0.0 : w_neg * double(b)) +
         0.0;
}

// kSample (sample_weight=, BceRows::sample_weight): each chunk first fills a row of
// weights (in L1) from the samples it spans (runs of sample_len elements of the flat
// array, located from the call's flat offset: one division per run), then the element
// loop multiplies: loss s * l (0 where s is 0) and gradient s * d. (Cutting the elements
// at the samples' boundaries instead, with s a scalar per piece, left a vector loop's
// scalar tail every sample: +30% at 4096 x 1000.)
template <class S, bool kWeight, bool kPosWeight, bool kLoss, bool kGrad, bool kSample = false>
double bce_rows_for(const BceRows<S>& a) {
  using T = compute_t<S>;
  constexpr idx kChunk = 256;
  // Elementwise, so one flat pass over all rows x n elements, unless pos_weight is one row
  // shared by all rows: then row by row (short rows cost a reduction each).
  const bool per_row = kPosWeight && a.pos_weight_row_stride == 0;
  const idx segments = per_row ? a.rows : (a.rows > 0 ? 1 : 0);
  const idx row_len = per_row ? a.n : a.rows * a.n;
  double total = 0, carry = 0, plain = 0;
  for (idx r = 0; r < segments; ++r) {
   {
    const idx len = row_len;
    const idx base = r * row_len;
    const idx pw_base = per_row ? 0 : base;
    const T grad_scale = a.grad_scale;
    const S* z = a.logits + base;
    const S* y = a.target + base;
    const S* w = kWeight ? a.weight + base : nullptr;
    const S* pw = kPosWeight ? a.pos_weight + pw_base : nullptr;
    S* lo = kLoss ? a.loss + base : nullptr;
    S* g = kGrad ? a.grad + base : nullptr;
    // Summed in double, in chunks of 256 whose sums are added with Kahan compensation:
    // a float32 sum of 2^24 losses of log 2 stalls at 2^24 ulp steps (0.659 instead of
    // 0.693 for the mean), and a plain double sum of 70000 float64 losses is off by 1e-12.
    for (idx c0 = 0; c0 < len; c0 += kChunk) {
      const idx c1 = len - c0 < kChunk ? len : c0 + kChunk;
      // The logits of the chunk, kept for the double recomputation below: the gradient
      // may be written over them (in place).
      T xs[kChunk];
      T sws[kSample ? kChunk : 1];
      if constexpr (kSample) {
        for (idx c = c0; c < c1;) {
          const idx sample = (a.offset + base + c) / a.sample_len;
          const idx end = (sample + 1) * a.sample_len - (a.offset + base);
          const idx stop = end < c1 ? end : c1;
          const T weight = a.sample_weight[sample];
          for (idx k = c; k < stop; ++k) sws[k - c0] = weight;
          c = stop;
        }
      }
      double chunk_sum = 0;
#pragma omp simd reduction(+ : chunk_sum)
      for (idx c = c0; c < c1; ++c) {
        const T x = lk_ld(z[c]);
        const T yc = lk_ld(y[c]);
        const T wc = kWeight ? lk_ld(w[c]) : T(1);
        const T pwc = kPosWeight ? lk_ld(pw[c]) : T(1);
        T sig;
        const T sp = lk_softplus_sigmoid<kGrad, S>(x, sig);
        const T neg = T(1) - yc;
        // In the compute type (a float32 loss in float32: converting A, B and the
        // factors to double cost as much as the rest of the loss); the rare loss beyond
        // float32's range is recomputed in double below.
        T loss;
        if (kWeight || kPosWeight) {
          loss = lk_bce_term(yc == T(0) || (kWeight && wc == T(0)) || (kPosWeight && pwc == T(0)),
                             wc, pwc, yc, sp - (x < T(0) ? x : T(0))) +
                 lk_bce_term(neg == T(0) || (kWeight && wc == T(0)), wc, T(1), neg,
                             sp + (x < T(0) ? T(0) : x)) +
                 T(0);  // +0, not -0
        } else {
          // y A + (1 - y) B = coef |z| + log1p(e^-|z|) with coef = 1 - y for z > 0, y otherwise:
          // one product and one sum of (for targets in [0, 1]) nonnegative terms, no
          // cancellation (max(z, 0) - z y cancels without FMA). An infinite z with coef = 0
          // gives 0, not NaN.
          const T coef = x > T(0) ? neg : yc;
          loss = (coef == T(0) ? T(0) : coef * lk_abs(x)) + sp;
        }
        if constexpr (kSample) {
          const T sc = sws[c - c0];
          loss = sc == T(0) ? T(0) : sc * loss;
        }
        if (kLoss) lo[c] = lk_st<S>(loss);
        chunk_sum += static_cast<double>(loss);
        if (kGrad) {
          xs[c - c0] = x;
          const T pos = kPosWeight ? pwc * yc : yc;
          const T d = kPosWeight ? (pos + neg) * sig - pos : sig - yc;
          const T gs = kSample ? grad_scale * sws[c - c0] : grad_scale;
          g[c] = lk_st<S>(kWeight ? gs * wc * d : gs * d);
        }
      }
      // An inf or NaN sum: some loss is inf or NaN, or overflowed float32 (a target or
      // weight far outside [0, 1] times a huge logit) while its double value may still
      // average into range. Recompute the chunk's losses in double (rare: never for
      // finite logits with targets and weights in [0, 1]).
      if (sizeof(T) < sizeof(double) && !(chunk_sum - chunk_sum == 0.0)) {
        chunk_sum = 0;
        for (idx c = c0; c < c1; ++c) {
          double loss = lk_bce_loss_double<T>(
              kGrad ? xs[c - c0] : lk_ld(z[c]), lk_ld(y[c]), kWeight ? lk_ld(w[c]) : T(1),
              kPosWeight ? lk_ld(pw[c]) : T(1));
          if (kSample) loss = sws[c - c0] == T(0) ? 0.0 : double(sws[c - c0]) * loss;
          if (kLoss) lo[c] = lk_st<S>(static_cast<T>(loss));
          chunk_sum += loss;
        }
      }
      lk_kahan_add(total, carry, chunk_sum);
      plain += chunk_sum;
    }
   }
  }
  // An infinite (or NaN) sum makes the compensated one NaN (inf - inf): the plain sum
  // says what it is then.
  return plain - plain == 0.0 ? total - carry : plain;
}

template <class S, bool kWeight, bool kPosWeight, bool kLoss>
double bce_rows_grad(const BceRows<S>& a) {
  if (a.sample_weight)
    return a.grad ? bce_rows_for<S, kWeight, kPosWeight, kLoss, true, true>(a)
                  : bce_rows_for<S, kWeight, kPosWeight, kLoss, false, true>(a);
  return a.grad ? bce_rows_for<S, kWeight, kPosWeight, kLoss, true>(a)
                : bce_rows_for<S, kWeight, kPosWeight, kLoss, false>(a);
}

template <class S, bool kWeight, bool kPosWeight>
double bce_rows_loss(const BceRows<S>& a) {
  return a.loss ? bce_rows_grad<S, kWeight, kPosWeight, true>(a)
                : bce_rows_grad<S, kWeight, kPosWeight, false>(a);
}

template <class S, bool kWeight>
double bce_rows_pos_weight(const BceRows<S>& a) {
  return a.pos_weight ? bce_rows_loss<S, kWeight, true>(a) : bce_rows_loss<S, kWeight, false>(a);
}

template <class S>
double bce_rows(const BceRows<S>& a) {
  return a.weight ? bce_rows_pos_weight<S, true>(a) : bce_rows_pos_weight<S, false>(a);
}
