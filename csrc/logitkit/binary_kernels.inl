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

template <class T>
inline T lk_sigmoid(T x) {
  const T ax = x < T(0) ? -x : x;
  const T t = lk_exp_nonpositive(-ax);
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
  // In double with polynomials cut to what a float result needs (relative 2^-36 instead
  // of 2^-53; 2x faster than lk_exp + lk_log1p_unit): e^-|x| as lk_exp with a degree-9
  // Taylor polynomial (|x| <= 104 keeps it normal: one scale factor), log1p(t) as
  // 2 atanh(s) to s^21.
  const double xd = x;
  double y = xd < 0.0 ? xd : -xd;
  y = y < -110.0 ? -110.0 : y;  // e^-110 rounds to 0 as a float result; NaN passes
  const double shifter = 6755399441056767.0;  // 1.5 * 2^52 + 1023
  const double t0 = y * 1.4426950408889634074 + shifter;
  const double n = t0 - shifter;
  const double scale = lk_bit_cast<double>(lk_bit_cast<std::uint64_t>(t0) << 52);
  double r = y - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const double t = p * scale;
  const double s = t / (2.0 + t);
  const double s2 = s * s;
  double q = 1.0 / 21.0;
  for (int k = 19; k >= 3; k -= 2) q = q * s2 + 1.0 / k;
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
  // log1p(t) = 2 s + 2 s^3 (1/3 + s^2/5 + ...), s <= 1/3 (as lk_log1p_unit)
  const double s2 = sh * sh;
  double p = 1.0 / 35.0;
  for (int k = 33; k >= 3; k -= 2) p = p * s2 + 1.0 / k;
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

template <class T>
void sigmoid_array(const T* x, T* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_sigmoid(x[i]);
}

template <class T>
void log_sigmoid_array(const T* x, T* out, idx n) {
#pragma omp simd
  for (idx i = 0; i < n; ++i) out[i] = lk_log_sigmoid(x[i]);
}

// Binary cross-entropy from logits (PyTorch's BCEWithLogits), for `rows` contiguous rows of
// n elements: z, y, and the optional full-size weight w share one layout; the optional
// pos_weight pw is either one row of n (per class) shared by all rows, or full-size.
//   loss = -w (pw y log sigmoid(z) + (1 - y) log sigmoid(-z))
//   grad = w ((pw y + 1 - y) sigmoid(z) - pw y) * grad_scale
// A zero coefficient never meets an infinite log (z = +-inf with a target of 0 or 1 gives
// 0, not NaN). Returns the sum of the losses; stores them to loss_out unless it is null.
// One instantiation per combination of options, so that the loop has no pointer test
// and vectorizes (testing nullable pointers per element kept it scalar: ~10 ns each).
template <class T, bool kWeight, bool kPosWeight, bool kLoss, bool kGrad>
double bce_rows_for(const BceRows<T>& a) {
  double total = 0, carry = 0, plain = 0;
  for (idx r = 0; r < a.rows; ++r) {
    const idx base = r * a.n;
    const T* z = a.logits + base;
    const T* y = a.target + base;
    const T* w = kWeight ? a.weight + base : nullptr;
    const T* pw = kPosWeight ? a.pos_weight + r * a.pos_weight_row_stride : nullptr;
    T* lo = kLoss ? a.loss + base : nullptr;
    T* g = kGrad ? a.grad + base : nullptr;
    // Summed in double, in chunks of 256 whose sums are added with Kahan compensation:
    // a float32 sum of 2^24 losses of log 2 stalls at 2^24 ulp steps (0.659 instead of
    // 0.693 for the mean), and a plain double sum of 70000 float64 losses is off by 1e-12.
    for (idx c0 = 0; c0 < a.n; c0 += 256) {
      const idx c1 = a.n - c0 < 256 ? a.n : c0 + 256;
      double row_sum = 0;
#pragma omp simd reduction(+ : row_sum)
      for (idx c = c0; c < c1; ++c) {
        const T x = z[c];
        const T ax = x < T(0) ? -x : x;
        const T t = lk_exp_nonpositive(-ax);
        const T soft = lk_log1p_unit(t);
        const T log_p = (x < T(0) ? x : T(0)) - soft;   // log sigmoid(x)
        const T log_q = (x < T(0) ? T(0) : -x) - soft;  // log sigmoid(-x)
        const T pwc = kPosWeight ? pw[c] : T(1);
        const T wc = kWeight ? w[c] : T(1);
        const T pos = pwc * y[c];
        const T neg = T(1) - y[c];
        // In double: w * (y * -3e38) overflows float32 for w < 1 where the product does
        // not, and a float32 loss past float32's range may still average into it. 0 - (...)
        // rather than -(...): a loss of zero is +0, not -0. A zero coefficient never meets
        // an infinite log.
        const double w_pos = double(wc) * double(pwc) * double(y[c]);
        const double w_neg = double(wc) * double(neg);
        const double loss = 0.0 - ((w_pos == 0.0 ? 0.0 : w_pos * double(log_p)) +
                                   (w_neg == 0.0 ? 0.0 : w_neg * double(log_q)));
        if (kLoss) lo[c] = static_cast<T>(loss);
        row_sum += loss;
        if (kGrad) {
          const T inv = T(1) / (T(1) + t);
          const T sig = x >= T(0) ? inv : t * inv;
          g[c] = a.grad_scale * wc * ((pos + neg) * sig - pos);
        }
      }
      lk_kahan_add(total, carry, row_sum);
      plain += row_sum;
    }
  }
  // An infinite (or NaN) sum makes the compensated one NaN (inf - inf): the plain sum
  // says what it is then.
  return plain - plain == 0.0 ? total - carry : plain;
}

template <class T, bool kWeight, bool kPosWeight, bool kLoss>
double bce_rows_grad(const BceRows<T>& a) {
  return a.grad ? bce_rows_for<T, kWeight, kPosWeight, kLoss, true>(a)
                : bce_rows_for<T, kWeight, kPosWeight, kLoss, false>(a);
}

template <class T, bool kWeight, bool kPosWeight>
double bce_rows_loss(const BceRows<T>& a) {
  return a.loss ? bce_rows_grad<T, kWeight, kPosWeight, true>(a)
                : bce_rows_grad<T, kWeight, kPosWeight, false>(a);
}

template <class T, bool kWeight>
double bce_rows_pos_weight(const BceRows<T>& a) {
  return a.pos_weight ? bce_rows_loss<T, kWeight, true>(a) : bce_rows_loss<T, kWeight, false>(a);
}

template <class T>
double bce_rows(const BceRows<T>& a) {
  return a.weight ? bce_rows_pos_weight<T, true>(a) : bce_rows_pos_weight<T, false>(a);
}
