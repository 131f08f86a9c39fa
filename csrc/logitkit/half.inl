// Loads and stores through the storage type: lk_ld(s) widens an element to its compute type,
// lk_st<S>(v) rounds a computed value to S (round to nearest, ties to even; NaN stays NaN,
// overflow gives inf). Identity for float and double.
//
// Included only from kernels_target.cpp inside the per-target namespace (see exp.inl).
//
// Plain integer and float operations with selects, so that the compiler vectorizes them
// on every target (SSE2, AVX2, AVX-512, NEON) inside the kernels' `omp simd` loops: GCC 12
// leaves _Float16 conversions scalar even with F16C, and the baseline targets have no
// conversion instructions at all. Checked exhaustively against the hardware conversions
// (all 2^16 float16 values widened, all 2^32 float32 values narrowed, to float16 and to
// bfloat16; tests/test_half.py checks them through the kernels).

inline float lk_ld(float x) { return x; }
inline double lk_ld(double x) { return x; }

inline float lk_bits_to_float(std::uint32_t u) { return lk_bit_cast<float>(u); }
inline std::uint32_t lk_float_to_bits(float f) { return lk_bit_cast<std::uint32_t>(f); }

// float16 -> float, exact. The exponent is rebiased (15 -> 127); inf/NaN get the rest of
// float's exponent range; a subnormal or zero m * 2^-24 is made the normal float
// 2^-14 * (1 + m / 1024) and 2^-14 subtracted again (exact), so that no float denormal is
// ever an operand (slow on some CPUs).
inline float lk_ld(Float16 h) {
  const std::uint32_t em = static_cast<std::uint32_t>(h.bits & 0x7fffu) << 13;
  const std::uint32_t exponent = em & 0x0f800000u;
  std::uint32_t u = em + (112u << 23);
  u = exponent == 0x0f800000u ? u + (112u << 23) : u;
  u = exponent == 0 ? u + (1u << 23) : u;
  float f = lk_bits_to_float(u);
  f = exponent == 0 ? f - 0x1p-14f : f;
  return lk_bits_to_float(lk_float_to_bits(f) |
                          (static_cast<std::uint32_t>(h.bits & 0x8000u) << 16));
}

// bfloat16 -> float, exact: the upper half of a float.
inline float lk_ld(BFloat16 h) { return lk_bits_to_float(static_cast<std::uint32_t>(h.bits) << 16); }

template <class S>
inline S lk_st(compute_t<S> v) {
  return v;
}

// float -> float16, round to nearest even (F. Giesen's float_to_half_fast3_rtne):
// normal results round by adding half an ulp (minus one, plus the kept lowest bit) before
// the shift; subnormal results come out of one float addition that aligns the mantissa
// (adding 0.5 puts 2^-24 at the last place); at or above 65520 the result is inf, NaN
// stays a (quiet) NaN.
template <>
inline Float16 lk_st<Float16>(float v) {
  std::uint32_t u = lk_float_to_bits(v);
  const std::uint32_t sign = u & 0x80000000u;
  u ^= sign;
  const std::uint32_t big = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  const std::uint32_t subnormal = lk_float_to_bits(lk_bits_to_float(u) + 0.5f) - 0x3f000000u;
  const std::uint32_t normal = (u - (112u << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  const std::uint32_t r = u >= (143u << 23) ? big : (u < (113u << 23) ? subnormal : normal);
  return Float16{static_cast<std::uint16_t>(r | (sign >> 16))};
}

// float -> bfloat16, round to nearest even; NaN is kept (quieted) rather than rounded, which
// could carry it into inf.
template <>
inline BFloat16 lk_st<BFloat16>(float v) {
  const std::uint32_t u = lk_float_to_bits(v);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t r = (u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : rounded;
  return BFloat16{static_cast<std::uint16_t>(r)};
}
