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
inline float lk_float16_bits_to_float(std::uint32_t bits) {
  const std::uint32_t em = (bits & 0x7fffu) << 13;
  const std::uint32_t exponent = em & 0x0f800000u;
  std::uint32_t u = em + (112u << 23);
  u = exponent == 0x0f800000u ? u + (112u << 23) : u;
  u = exponent == 0 ? u + (1u << 23) : u;
  float f = lk_bits_to_float(u);
  f = exponent == 0 ? f - 0x1p-14f : f;
  return lk_bits_to_float(lk_float_to_bits(f) | ((bits & 0x8000u) << 16));
}
inline float lk_ld(Float16 h) { return lk_float16_bits_to_float(h.bits); }

// bfloat16 -> float, exact: the upper half of a float.
inline float lk_bfloat16_bits_to_float(std::uint32_t bits) { return lk_bits_to_float(bits << 16); }
inline float lk_ld(BFloat16 h) { return lk_bfloat16_bits_to_float(h.bits); }

// The bits of an S (a 16-bit format) in the low half of a 32-bit lane, to float.
template <class S>
inline float lk_bits_to_compute(std::uint32_t bits) {
  return std::is_same<S, Float16>::value ? lk_float16_bits_to_float(bits)
                                         : lk_bfloat16_bits_to_float(bits);
}

template <class S>
inline S lk_st(compute_t<S> v) {
  return v;
}

// float -> float16, round to nearest even (F. Giesen's float_to_half_fast3_rtne):
// normal results round by adding half an ulp (minus one, plus the kept lowest bit) before
// the shift; subnormal results come out of one float addition that aligns the mantissa
// (adding 0.5 puts 2^-24 at the last place); at or above 65520 the result is inf, NaN
// stays a (quiet) NaN.
inline std::uint32_t lk_float_to_float16_bits(float v) {
  std::uint32_t u = lk_float_to_bits(v);
  const std::uint32_t sign = u & 0x80000000u;
  u ^= sign;
  const std::uint32_t big = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  const std::uint32_t subnormal = lk_float_to_bits(lk_bits_to_float(u) + 0.5f) - 0x3f000000u;
  const std::uint32_t normal = (u - (112u << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  const std::uint32_t r = u >= (143u << 23) ? big : (u < (113u << 23) ? subnormal : normal);
  return r | (sign >> 16);
}
template <>
inline Float16 lk_st<Float16>(float v) {
  return Float16{static_cast<std::uint16_t>(lk_float_to_float16_bits(v))};
}

// float -> bfloat16, round to nearest even; NaN is kept (quieted) rather than rounded, which
// could carry it into inf.
inline std::uint32_t lk_float_to_bfloat16_bits(float v) {
  const std::uint32_t u = lk_float_to_bits(v);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : rounded;
}
template <>
inline BFloat16 lk_st<BFloat16>(float v) {
  return BFloat16{static_cast<std::uint16_t>(lk_float_to_bfloat16_bits(v))};
}

// float to the bits of a 16-bit S, in a 32-bit lane.
template <class S>
inline std::uint32_t lk_compute_to_bits(float v) {
  return std::is_same<S, Float16>::value ? lk_float_to_float16_bits(v)
                                         : lk_float_to_bfloat16_bits(v);
}

// One vector (lk_lanes<T>() elements) at a time. Where the CPU converts float16 itself
// (AVX-512F; F16C with AVX2) that is one instruction each way; elsewhere a loop of the
// scalar functions above.
template <class S, class T>
LK_ALWAYS_INLINE void lk_load_vector(T* __restrict v, const S* __restrict x) {
  constexpr idx L = LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
#if defined(__AVX512F__)
  if constexpr (sizeof(S) == 2 && L == 16 && std::is_same<S, Float16>::value) {
    _mm512_storeu_ps(v, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))));
    return;
  }
#endif
#if defined(__F16C__) && defined(__AVX__)
  if constexpr (sizeof(S) == 2 && L == 8 && std::is_same<S, Float16>::value) {
    _mm256_storeu_ps(v, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x))));
    return;
  }
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if constexpr (L == 16 && std::is_same<S, BFloat16>::value) {
    // Word j to the upper half of lane j (the lower halves zeroed): one vpermw.
    const __m512i spread = _mm512_set_epi16(
        15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0, 7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0,
        1, 0, 0, 0);
    const __m512i h = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    _mm512_storeu_ps(v, _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, spread, h)));
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (L == 8 && std::is_same<S, BFloat16>::value) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
    _mm256_storeu_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
    return;
  }
#endif
#if defined(__SSE2__) && !defined(__AVX__)
  // SSE2 (the x86 baseline) has no 16 <-> 32-bit conversions the vectorizer uses well in
  // a 4-lane loop (it went scalar: float16 softmax 20x slower than float32): widen the
  // bits with an unpack, then the bit functions on 32-bit lanes.
  if constexpr (L == 4 && sizeof(S) == 2) {
    const __m128i h = _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x)),
                                         _mm_setzero_si128());
    alignas(16) std::uint32_t bits[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(bits), h);
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = lk_bits_to_compute<S>(bits[j]);
    return;
  }
#endif
#pragma omp simd
  for (idx j = 0; j < L; ++j) v[j] = lk_ld(x[j]);
}

template <class S, class T>
LK_ALWAYS_INLINE void lk_store_vector(S* __restrict x, const T* __restrict v) {
  constexpr idx L = LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
#if defined(__AVX512F__)
  if constexpr (sizeof(S) == 2 && L == 16 && std::is_same<S, Float16>::value) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x),
                        _mm512_cvtps_ph(_mm512_loadu_ps(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return;
  }
#endif
#if defined(__F16C__) && defined(__AVX__)
  if constexpr (sizeof(S) == 2 && L == 8 && std::is_same<S, Float16>::value) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(x),
                     _mm256_cvtps_ph(_mm256_loadu_ps(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return;
  }
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if constexpr (L == 16 && std::is_same<S, BFloat16>::value) {
    // As lk_st<BFloat16>: round to nearest even, NaN kept (quieted).
    const __m512 f = _mm512_loadu_ps(v);
    const __m512i u = _mm512_castps_si512(f);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd);
    const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x400000));
    // The upper halves of the 16 lanes, in order, into the lower 256 bits: one vpermw.
    const __m512i upper = _mm512_set_epi16(
        31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1, 31, 29, 27, 25, 23, 21, 19, 17,
        15, 13, 11, 9, 7, 5, 3, 1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x),
                        _mm512_castsi512_si256(_mm512_permutexvar_epi16(upper, r)));
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (L == 8 && std::is_same<S, BFloat16>::value) {
    const __m256 f = _mm256_loadu_ps(v);
    const __m256i u = _mm256_castps_si256(f);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    // Pack the 32-bit lanes' low halves (values < 2^16: packus is exact) in order.
    const __m128i lo = _mm256_castsi256_si128(r);
    const __m128i hi = _mm256_extracti128_si256(r, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(x), _mm_packus_epi32(lo, hi));
    return;
  }
#endif
#if defined(__SSE2__) && !defined(__AVX__)
  if constexpr (L == 4 && sizeof(S) == 2) {  // as in lk_load_vector
    alignas(16) std::uint32_t bits[4];
#pragma omp simd
    for (idx j = 0; j < L; ++j) bits[j] = lk_compute_to_bits<S>(v[j]);
    // Sign-extend the low halves so that the signed saturating pack keeps them exactly.
    __m128i r = _mm_load_si128(reinterpret_cast<const __m128i*>(bits));
    r = _mm_srai_epi32(_mm_slli_epi32(r, 16), 16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(x), _mm_packs_epi32(r, r));
    return;
  }
#endif
#pragma omp simd
  for (idx j = 0; j < L; ++j) x[j] = lk_st<S>(v[j]);
}

// out[i] = f(in[i]) over a row of n elements (in and out may be the same row), one vector
// at a time through lk_load_vector / lk_store_vector for the 16-bit formats.
template <class S, class F>
LK_ALWAYS_INLINE void lk_map_row(const S* in, S* out, idx n, F f) {
  using T = compute_t<S>;
  if constexpr (std::is_same<S, T>::value) {
#pragma omp simd
    for (idx i = 0; i < n; ++i) out[i] = f(in[i]);
  } else {
    constexpr idx L = LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
    idx i = 0;
    for (; i + L <= n; i += L) {
      T v[L];
      lk_load_vector(v, in + i);
#pragma omp simd
      for (idx j = 0; j < L; ++j) v[j] = f(v[j]);
      lk_store_vector(out + i, v);
    }
    for (; i < n; ++i) out[i] = lk_st<S>(f(lk_ld(in[i])));
  }
}

// out[i] = f(a[i], b[i], i) over a row: a second input row (b; may be null when f ignores
// it) and the element's index, e.g. for class weights.
template <class S, class F>
LK_ALWAYS_INLINE void lk_map_rows2(const S* a, const S* b, S* out, idx n, F f) {
  using T = compute_t<S>;
  if constexpr (std::is_same<S, T>::value) {
    if (b) {
#pragma omp simd
      for (idx i = 0; i < n; ++i) out[i] = f(a[i], b[i], i);
    } else {
#pragma omp simd
      for (idx i = 0; i < n; ++i) out[i] = f(a[i], T(0), i);
    }
  } else {
    constexpr idx L = LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
    idx i = 0;
    for (; i + L <= n; i += L) {
      T va[L];
      T vb[L];
      lk_load_vector(va, a + i);
      if (b) {
        lk_load_vector(vb, b + i);
      } else {
        for (idx j = 0; j < L; ++j) vb[j] = T(0);
      }
#pragma omp simd
      for (idx j = 0; j < L; ++j) va[j] = f(va[j], vb[j], i + j);
      lk_store_vector(out + i, va);
    }
    for (; i < n; ++i) out[i] = lk_st<S>(f(lk_ld(a[i]), b ? lk_ld(b[i]) : T(0), i));
  }
}

// out[i] = f(e[i], y[i], i) for a row of values e already in the compute type (y: an input
// row of S, or null, then f gets 0).
template <class S, class T, class F>
LK_ALWAYS_INLINE void lk_write_row(S* out, const T* e, const S* y, idx n, F f) {
  constexpr idx L = LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
  idx i = 0;
  for (; i + L <= n; i += L) {
    T yv[L];
    if (y) {
      lk_load_vector(yv, y + i);
    } else {
      for (idx j = 0; j < L; ++j) yv[j] = T(0);
    }
    T v[L];
#pragma omp simd
    for (idx j = 0; j < L; ++j) v[j] = f(e[i + j], yv[j], i + j);
    lk_store_vector(out + i, v);
  }
  for (; i < n; ++i) out[i] = lk_st<S>(f(e[i], y ? lk_ld(y[i]) : T(0), i));
}

// exp(x) for x <= 0 whose result is stored as S (or feeds a value that is). The kernels'
// fast exp flushes results below float32's smallest normal number, 2^-126, to zero, and
// 2^-126 is also bfloat16's smallest normal: bfloat16 outputs take the variant that reaches
// into the subnormal range (softmax([0, -88.5]) in bfloat16 is 3.7e-39, not 0) for one more
// multiplication (the general lk_exp cost bfloat16 softmax 60%).
template <class S, class T>
LK_ALWAYS_INLINE T lk_exp_shifted(T x) {
  if constexpr (std::is_same<S, BFloat16>::value) {
    return lk_exp_nonpositive_subnormal(x);
  } else {
    return lk_exp_nonpositive(x);
  }
}

// Streaming (non-temporal) stores, for outputs too large to stay in cache: a plain store
// first reads the line it writes into the cache (the read-for-ownership), so writing an
// array from DRAM costs a read and a write of it; a streaming store only writes. On this
// machine (Zen 4, 2 cores) one thread already saturates DRAM: x * 2 over 64 x 128256
// float32 takes 2.45 ms with plain stores and 1.47 ms streamed, with 1 or 2 threads
// alike. Only float and double rows (the 16-bit formats keep their plain stores).
//
// One vector of L values to `out`, which is aligned to the vector width.
template <class T>
LK_ALWAYS_INLINE void lk_stream_vector(T* out, const T* v) {
  constexpr idx L = LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
#if defined(__AVX512F__)
  if constexpr (L * sizeof(T) == 64 && std::is_same<T, float>::value) {
    _mm512_stream_ps(out, _mm512_loadu_ps(v));
    return;
  } else if constexpr (L * sizeof(T) == 64 && std::is_same<T, double>::value) {
    _mm512_stream_pd(out, _mm512_loadu_pd(v));
    return;
  }
#elif defined(__AVX__)
  if constexpr (L * sizeof(T) == 32 && std::is_same<T, float>::value) {
    _mm256_stream_ps(out, _mm256_loadu_ps(v));
    return;
  } else if constexpr (L * sizeof(T) == 32 && std::is_same<T, double>::value) {
    _mm256_stream_pd(out, _mm256_loadu_pd(v));
    return;
  }
#elif defined(__SSE2__)
  if constexpr (L * sizeof(T) == 16 && std::is_same<T, float>::value) {
    _mm_stream_ps(out, _mm_loadu_ps(v));
    return;
  } else if constexpr (L * sizeof(T) == 16 && std::is_same<T, double>::value) {
    _mm_stream_pd(out, _mm_loadu_pd(v));
    return;
  }
#endif
  for (idx j = 0; j < L; ++j) out[j] = v[j];
}

// Orders the streaming stores before whatever follows (they are weakly ordered).
LK_ALWAYS_INLINE void lk_stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// out[i] = f(a[i], b[i] (0 without b), i) over a row of n elements of T (float or double),
// with streaming stores (in place, out == a or b, works: each vector is read first).
template <class T, class F>
LK_ALWAYS_INLINE void lk_stream_row2(T* out, const T* a, const T* b, idx n, F f) {
  constexpr idx L = LOGITKIT_VECTOR_BYTES / static_cast<idx>(sizeof(T));
  // Plain stores up to the first vector-aligned element (none if out is not even aligned
  // to T: then the whole row).
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(out);
  idx head = n;
  if (address % sizeof(T) == 0) {
    const idx misalign = static_cast<idx>(address % LOGITKIT_VECTOR_BYTES);
    head = misalign == 0 ? 0 : (LOGITKIT_VECTOR_BYTES - misalign) / static_cast<idx>(sizeof(T));
    if (head > n) head = n;
  }
  idx i = 0;
  for (; i < head; ++i) out[i] = f(a[i], b ? b[i] : T(0), i);
  if (b) {
    for (; i + L <= n; i += L) {
      T v[L];
#pragma omp simd
      for (idx j = 0; j < L; ++j) v[j] = f(a[i + j], b[i + j], i + j);
      lk_stream_vector(out + i, v);
    }
  } else {
    for (; i + L <= n; i += L) {
      T v[L];
#pragma omp simd
      for (idx j = 0; j < L; ++j) v[j] = f(a[i + j], T(0), i + j);
      lk_stream_vector(out + i, v);
    }
  }
  for (; i < n; ++i) out[i] = f(a[i], b ? b[i] : T(0), i);
}

// A thread's row of T for rows that keep their exponentials until a streaming pass writes
// the output (the output row itself is not written twice then): up to kStreamKeepBytes,
// allocated once per thread and kept (1 MiB: with the row it streams in, within a Zen 4
// core's L2).
constexpr idx kStreamKeepBytes = idx(1) << 20;
template <class T>
struct LkStreamRow {
  T* data = nullptr;
  ~LkStreamRow() { ::operator delete(data); }
  T* get() {
    if (!data) data = static_cast<T*>(::operator new(kStreamKeepBytes));
    return data;
  }
};
template <class T>
constexpr idx lk_stream_keep() {
  return kStreamKeepBytes / static_cast<idx>(sizeof(T));
}
