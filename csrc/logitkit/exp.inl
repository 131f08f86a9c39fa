// Vectorizable exp for float and double.
//
// Included only from kernels_target.cpp, *inside* the per-target namespace, so every SIMD
// target gets its own copy (an inline function shared between translation units compiled
// with different -m flags would let the linker pick, say, the AVX-512 copy for the baseline
// path). Do not include standard headers here.
//
// Written as branch-free scalar code that GCC/Clang vectorize inside `omp simd` loops:
// selects instead of branches, bit casts through memcpy, integer work in the same lane width
// as the float type. Requires -fno-trapping-math (else the selects become branches) and
// must never be built with -ffast-math / -ffinite-math-only (the inf/NaN cases below rely
// on IEEE semantics).
//
// Method (Cody-Waite): n = round(x / ln2), r = x - n*ln2 (in two parts, exact for the range
// used), exp(x) = p(r) * 2^n with p a polynomial on |r| <= ln2/2. 2^n is applied as two
// factors 2^n1 * 2^n2 so that results down to the smallest subnormal and up to overflow
// come out of ordinary multiplications, without special cases.
//
// Special values: x = -inf -> 0, +inf -> +inf, NaN -> NaN (NaN survives the clamps because
// comparisons with NaN are false, and poisons p), overflow -> +inf, underflow -> 0.
//
// Accuracy, measured against float64/long-double exp over dense grids plus all special
// values (tests/test_exp.py): float <= 1.01 ulp for normal results (measured 1.002 with
// FMA), double <= 1 ulp (measured 0.98); subnormal results are within one subnormal step
// of the correctly rounded value (double rounding when 2^n1 and 2^n2 are applied).

template <class To, class From>
inline To lk_bit_cast(From from) {
  static_assert(sizeof(To) == sizeof(From), "bit cast between different sizes");
  To to;
  LOGITKIT_MEMCPY(&to, &from, sizeof(To));
  return to;
}

inline float lk_exp(float x) {
  // Below -104 the result is 0 even as a subnormal; above 89 it overflows. Clamping keeps n
  // inside [-150, 128] where the two-factor scale cannot overflow its exponent field.
  x = x < -104.0f ? -104.0f : x;
  x = x > 89.0f ? 89.0f : x;

  // Round x/ln2 to an integer with the 1.5*2^23 shifter: the integer lands in the low
  // mantissa bits, so it can be read out of the bit pattern without a float->int conversion
  // (which would be undefined for NaN).
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const std::int32_t k = lk_bit_cast<std::int32_t>(t) - lk_bit_cast<std::int32_t>(shifter);

  // ln2 = 0.693359375 - 2.12194440e-4: the first part has 9 significant bits, so n*hi is
  // exact for |n| <= 2^15.
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;

  // Minimax polynomial for (exp(r) - 1 - r) / r^2 on |r| <= ln2/2 (Cephes expf).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r;
  p = p + 1.0f;

  const std::int32_t k1 = k >> 1;  // arithmetic shift: floor(k/2)
  const std::int32_t k2 = k - k1;
  const float s1 = lk_bit_cast<float>(static_cast<std::uint32_t>(k1 + 127) << 23);
  const float s2 = lk_bit_cast<float>(static_cast<std::uint32_t>(k2 + 127) << 23);
  return p * s1 * s2;
}

inline double lk_exp(double x) {
  x = x < -746.0 ? -746.0 : x;
  x = x > 710.0 ? 710.0 : x;

  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634074 + shifter;
  const double n = t - shifter;
  const std::int64_t k = lk_bit_cast<std::int64_t>(t) - lk_bit_cast<std::int64_t>(shifter);

  // fdlibm's split of ln2: the high part has 32 significant bits, n*hi is exact for
  // |n| < 2^21.
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;

  // Taylor polynomial to degree 13: truncation error < 5e-18 relative on |r| <= ln2/2.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * (r * r) + r;
  p = p + 1.0;

  // Split n without a 64-bit arithmetic shift (AVX2 has none): n1 = round(n/2) with the
  // same shifter trick, n2 = n - n1. Both lie in [-538, 512], inside the exponent range.
  const double t1 = n * 0.5 + shifter;
  const std::int64_t k1 = lk_bit_cast<std::int64_t>(t1) - lk_bit_cast<std::int64_t>(shifter);
  const std::int64_t k2 = k - k1;
  const double s1 = lk_bit_cast<double>(static_cast<std::uint64_t>(k1 + 1023) << 52);
  const double s2 = lk_bit_cast<double>(static_cast<std::uint64_t>(k2 + 1023) << 52);
  return p * s1 * s2;
}

// a * b - p exactly, for p = a * b rounded (one FMA, or Dekker's product without FMA).
inline double lk_product_error(double a, double b, double p) {
#if defined(__GNUC__) && (defined(__FMA__) || defined(__aarch64__))
  return __builtin_fma(a, b, -p);
#else
  const double c = 134217729.0;  // 2^27 + 1: splits into 26-bit halves
  const double ac = a * c;
  const double ah = ac - (ac - a);
  const double al = a - ah;
  const double bc = b * c;
  const double bh = bc - (bc - b);
  const double bl = b - bh;
  return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
#endif
}

// exp(x) as an unevaluated sum hi + lo (returns hi, stores lo): lk_exp with the rounding of
// its last step (1 + (e^r - 1)) and of the argument reduction kept, so hi is within about
// 0.5 ulp of exp(x) (lk_exp: 1 ulp) and hi + lo much closer. hi is lk_exp(x) (subnormal and special results included); lo
// is meaningful only for normal results. For log_sigmoid's ~1 ulp results.
inline double lk_exp_hi_lo(double x, double& lo) {
  x = x < -746.0 ? -746.0 : x;
  x = x > 710.0 ? 710.0 : x;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634074 + shifter;
  const double n = t - shifter;
  const std::int64_t k = lk_bit_cast<std::int64_t>(t) - lk_bit_cast<std::int64_t>(shifter);
  // r = x - n ln2 as r + r_lo: x - n * ln2_hi is exact, n * ln2_lo's rounding is kept.
  const double rr = x - n * 6.93147180369123816490e-01;
  const double a = n * 1.90821492927058770002e-10;
  const double r = rr - a;
  const double r_lo = ((rr - r) - a) - lk_product_error(n, 1.90821492927058770002e-10, a);
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  const double u = p * (r * r) + r;  // e^r - 1, |u| < 0.42
  const double hi1 = 1.0 + u;
  // exact (Fast2Sum: 1 >= |u|), plus r_lo's share: e^(r + r_lo) = e^r (1 + r_lo)
  const double lo1 = ((1.0 - hi1) + u) + r_lo * hi1;
  const double t1 = n * 0.5 + shifter;
  const std::int64_t k1 = lk_bit_cast<std::int64_t>(t1) - lk_bit_cast<std::int64_t>(shifter);
  const std::int64_t k2 = k - k1;
  const double s1 = lk_bit_cast<double>(static_cast<std::uint64_t>(k1 + 1023) << 52);
  const double s2 = lk_bit_cast<double>(static_cast<std::uint64_t>(k2 + 1023) << 52);
  lo = lo1 * s1 * s2;
  return hi1 * s1 * s2;
}

// exp(x) for x <= 0 (or NaN), the argument range of every shifted exponential in the
// kernels (x - max <= 0, -|x| <= 0). Cheaper than lk_exp, because the kernels are bound by
// these operations rather than by memory for rows that fit in cache:
//   - no overflow side, and results below the smallest normal number (2^-126 for float,
//     2^-1022 for double) are flushed to zero, so 2^n is one shift of the rounding
//     shifter's bits (absolute error of a flushed result < 1.2e-38 / 2.3e-308);
//   - float: a degree-5 minimax polynomial for exp(r) itself (fitted for relative error
//     with p(0) = 1 by linear programming on a dense grid: 7.4e-8 before rounding),
//     applied as p(r) * 2^n, with a one-step reduction where FMA is available: 9
//     FMA-unit operations per vector instead of 15. Measured max error 4.8 ulp with FMA,
//     2.9 ulp without; relative error < 3.9e-7 (tests/test_exp.py);
//     softmax's own float32 rounding of x - max is already up to 3.8e-6 relative.
//   - double: the Taylor polynomial of lk_exp in one Horner chain (<= 1 ulp).
// Special values: -inf -> 0, NaN -> NaN (the scale is 0 then, but p is NaN).
// (x > 0 is outside the contract: right up to x = 88.7 / 709.7, wrong beyond.)

// kExtra = 8 (lk_exp_nonpositive_subnormal): results down into the subnormal range, for
// bfloat16 outputs, whose smallest normal is float32's (2^-126) and whose subnormals
// reach 2^-133: the scale is 2^(n + 8), normal down to n = -134, and the result is
// multiplied by 2^-8 at the end (exact for normal results, one rounding for subnormal
// ones). Below x = -93.6 (n = -135) the result is exactly 0, as the bfloat16 rounding of
// anything below 2^-134 is.
template <int kExtra>
inline float lk_exp_nonpositive_scaled(float x) {
  // At x = -88, n = -127 and the scale 2^(n+127 biased) is the bit pattern 0: exactly 0.
  // (With kExtra = 8: at x = -93.6, n = -135, likewise.)
  constexpr float kLowest = kExtra == 0 ? -88.0f : -93.6f;
  static_assert(kExtra == 0 || kExtra == 8, "the clamp is set for these two");
  x = x < kLowest ? kLowest : x;
  // Shifter 1.5*2^23 + 127 (+ kExtra): the rounded integer n lands in the low mantissa bits
  // already biased by 127, so shifting the bits left by 23 gives the float 2^n.
  const float shifter = 12583039.0f + static_cast<float>(kExtra);
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const float scale = lk_bit_cast<float>(lk_bit_cast<std::uint32_t>(t) << 23);
  // With FMA (and GCC/Clang, which contract this expression into one), one reduction step
  // with ln2 rounded to float instead of two: r is off by n * 1.9e-9, a relative error of
  // at most 2.4e-7 for the smallest results (n = -126) and below 3e-8 for the terms within
  // e^-10 of the row maximum, which make the sums. Rounding x - max to float already costs
  // up to 3.8e-6 at |x - max| >= 64.
#if defined(__GNUC__) && (defined(__FMA__) || defined(__aarch64__))
  const float r = x - n * 0.693147182464599609375f;  // contracted to one FMA
#else
  // Without FMA, n * ln2 would be rounded before the subtraction (errors of ~70 ulp):
  // keep the exact two-step reduction.
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
#endif
  // Constrained to exp(0) = 1 exactly, so a row's maximum contributes exactly 1 (a
  // length-1 softmax is exactly 1 and its log_softmax exactly 0); the fit gave c1 = 1.
  float p = 0.008325664326548576f;
  p = p * r + 0.04190804436802864f;
  p = p * r + 0.16666939854621887f;
  p = p * r + 0.49999043345451355f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  if constexpr (kExtra == 0) {
    return p * scale;
  } else {
    return (p * scale) * (1.0f / static_cast<float>(1 << kExtra));
  }
}

inline float lk_exp_nonpositive(float x) { return lk_exp_nonpositive_scaled<0>(x); }
inline float lk_exp_nonpositive_subnormal(float x) { return lk_exp_nonpositive_scaled<8>(x); }

inline double lk_exp_nonpositive(double x) {
  // At x = -709, n = -1023 and the scale's bit pattern is 0.
  x = x < -709.0 ? -709.0 : x;
  const double shifter = 6755399441056767.0;  // 1.5 * 2^52 + 1023
  const double t = x * 1.4426950408889634074 + shifter;
  const double n = t - shifter;
  const double scale = lk_bit_cast<double>(lk_bit_cast<std::uint64_t>(t) << 52);
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  return p * scale;
}
