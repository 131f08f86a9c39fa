// Scalar conversions between the storage types and double, for the drivers (losses.cpp,
// softmax.cpp): per-row values such as losses and class weights, never whole arrays.
//
// Not for the kernels: kernels_target.cpp is compiled once per SIMD target and must not
// include inline functions shared with other translation units (the linker could pick
// another target's copy); its vectorizable conversions are in half.inl.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernel_table.hpp"

namespace logitkit {

inline double storage_to_double(float v) { return v; }
inline double storage_to_double(double v) { return v; }
inline double storage_to_double(Float16 h) {
  const int exponent = (h.bits >> 10) & 0x1f;
  const int mantissa = h.bits & 0x3ff;
  double v;
  if (exponent == 0x1f)
    v = mantissa ? std::nan("") : HUGE_VAL;
  else if (exponent == 0)
    v = std::ldexp(static_cast<double>(mantissa), -24);
  else
    v = std::ldexp(static_cast<double>(mantissa | 0x400), exponent - 25);
  return (h.bits & 0x8000) ? -v : v;
}
inline double storage_to_double(BFloat16 h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Rounds to S, to nearest (ties to even).
template <class S>
inline S storage_from_double(double v) {
  return static_cast<S>(v);
}
template <>
inline Float16 storage_from_double<Float16>(double v) {
  const std::uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const double a = std::fabs(v);
  if (std::isnan(v)) return Float16{static_cast<std::uint16_t>(sign | 0x7e00)};
  if (a >= 65520.0) return Float16{static_cast<std::uint16_t>(sign | 0x7c00)};
  // Below 2^-14 the step is 2^-24 (subnormals); above, 2^(e - 10) for a in [2^e, 2^(e+1)).
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  const int step_exponent = (e - 1 < -14 ? -14 : e - 1) - 10;
  const double steps = std::nearbyint(std::ldexp(a, -step_exponent));  // ties to even
  const double rounded = std::ldexp(steps, step_exponent);
  // Reassemble the bits from the rounded value (which may have carried into the next
  // binade, or up to the largest finite value 65504).
  if (rounded == 0) return Float16{sign};
  int re;
  std::frexp(rounded, &re);
  std::uint16_t bits;
  if (re - 1 < -14) {
    bits = static_cast<std::uint16_t>(std::ldexp(rounded, 24));
  } else {
    const int mantissa = static_cast<int>(std::ldexp(rounded, -(re - 1) + 10)) - 0x400;
    bits = static_cast<std::uint16_t>(((re - 1 + 15) << 10) | mantissa);
  }
  return Float16{static_cast<std::uint16_t>(sign | bits)};
}
template <>
inline BFloat16 storage_from_double<BFloat16>(double v) {
  // Through float (exact below 2^-126 too, as bfloat16 has float's exponent range); the
  // double rounding errs only on exact ties of the float, which the result is within
  // 2^-17 relative of.
  const float f = static_cast<float>(v);
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return BFloat16{static_cast<std::uint16_t>((u >> 16) | 0x40)};
  return BFloat16{static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

}  // namespace logitkit
