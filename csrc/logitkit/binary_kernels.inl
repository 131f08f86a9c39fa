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

template <class T>
inline T lk_log_sigmoid(T x) {
  const T ax = x < T(0) ? -x : x;
  const T t = lk_exp_nonpositive(-ax);
  // -(log1p(t) - min(x, 0)) rather than min(x, 0) - log1p(t): the same value, but
  // log_sigmoid(+inf) is -0.0 as in SciPy's log_expit (log of a probability of 1 from below).
  return -(lk_log1p_unit(t) - (x < T(0) ? x : T(0)));
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
template <class T>
double bce_rows(const BceRows<T>& a) {
  double total = 0;
  for (idx r = 0; r < a.rows; ++r) {
    const idx base = r * a.n;
    const T* z = a.logits + base;
    const T* y = a.target + base;
    const T* w = a.weight ? a.weight + base : nullptr;
    const T* pw = a.pos_weight ? a.pos_weight + r * a.pos_weight_row_stride : nullptr;
    T* lo = a.loss ? a.loss + base : nullptr;
    T* g = a.grad ? a.grad + base : nullptr;
    // Summed in double: a float32 sum of 2^24 losses of log 2 stalls at 2^24 ulp steps
    // (0.659 instead of 0.693 for the mean).
    double row_sum = 0;
#pragma omp simd reduction(+ : row_sum)
    for (idx c = 0; c < a.n; ++c) {
      const T x = z[c];
      const T ax = x < T(0) ? -x : x;
      const T t = lk_exp_nonpositive(-ax);
      const T soft = lk_log1p_unit(t);
      const T log_p = (x < T(0) ? x : T(0)) - soft;   // log sigmoid(x)
      const T log_q = (x < T(0) ? T(0) : -x) - soft;  // log sigmoid(-x)
      const T pos = (pw ? pw[c] : T(1)) * y[c];
      const T neg = T(1) - y[c];
      const T wc = w ? w[c] : T(1);
      // In double: w * (y * -3e38) overflows float32 for w < 1 where the product does
      // not, and a float32 loss past float32's range may still average into it. 0 - (...)
      // rather than -(...): a loss of zero is +0, not -0. A zero coefficient never meets
      // an infinite log.
      const double w_pos = double(wc) * double(pw ? pw[c] : T(1)) * double(y[c]);
      const double w_neg = double(wc) * double(neg);
      const double loss = 0.0 - ((w_pos == 0.0 ? 0.0 : w_pos * double(log_p)) +
                                 (w_neg == 0.0 ? 0.0 : w_neg * double(log_q)));
      if (lo) lo[c] = static_cast<T>(loss);
      row_sum += loss;
      if (g) {
        const T inv = T(1) / (T(1) + t);
        const T sig = x >= T(0) ? inv : t * inv;
        g[c] = a.grad_scale * wc * ((pos + neg) * sig - pos);
      }
    }
    total += double(row_sum);
  }
  return total;
}
