// One SIMD target's kernels. CMake compiles this file once per target (baseline, avx2,
// avx512, ...) with that target's -m flags and LOGITKIT_TARGET_NS set to a namespace of its
// own, so no inline function or template instantiation is shared between targets.
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernel_table.hpp"

// Compiler portability for the .inl files included below, which sit inside the per-target
// namespace and so may not include standard headers themselves. GCC and Clang (clang-cl
// too) get their builtins, the same tokens as before. MSVC has no __builtin_memcpy /
// __builtin_logf / __builtin_log, so it gets the C library functions (memcpy is an /O2
// intrinsic; ::logf and ::log are out-of-line CRT functions, so no inline function is
// shared between targets) and a compile-time infinity.
#if defined(_MSC_VER) && !defined(__clang__)
#include <math.h>
#include <string.h>

#include <limits>
#define LOGITKIT_MEMCPY(dst, src, n) ::memcpy(dst, src, n)
#define LOGITKIT_HUGE_VAL() (std::numeric_limits<double>::infinity())
#define LOGITKIT_LOGF(x) ::logf(x)
#define LOGITKIT_LOG(x) ::log(x)
#else
#define LOGITKIT_MEMCPY(dst, src, n) __builtin_memcpy(dst, src, n)
#define LOGITKIT_HUGE_VAL() __builtin_huge_val()
#define LOGITKIT_LOGF(x) __builtin_logf(x)
#define LOGITKIT_LOG(x) __builtin_log(x)
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define LK_ALWAYS_INLINE __forceinline
#define LK_UNLIKELY(c) (c)
#else
#define LK_ALWAYS_INLINE inline __attribute__((always_inline))
#define LK_UNLIKELY(c) __builtin_expect(!!(c), 0)
#endif

#ifndef LOGITKIT_TARGET_NS
#error "LOGITKIT_TARGET_NS must name this target's namespace"
#endif
#ifndef LOGITKIT_TARGET_NAME
#error "LOGITKIT_TARGET_NAME must be this target's name"
#endif

namespace logitkit {
namespace LOGITKIT_TARGET_NS {
namespace {

#include "exp.inl"
#include "half.inl"
#include "softmax_kernels.inl"
#include "loss_kernels.inl"
#include "binary_kernels.inl"

template <class S>
constexpr SoftmaxKernels<S> softmax_kernels() {
  return SoftmaxKernels<S>{
      &softmax_rows<S>,  &log_softmax_rows<S>, &logsumexp_rows<S>, &softmax_rows_stream<S>,
      &log_softmax_rows_stream<S>, &softmax_cols<S>,
      &log_softmax_cols<S>, &logsumexp_cols<S>, &logsumexp_piece<S>, &softmax_piece<S>,
      &log_softmax_piece<S>, &logsumexp_piece_opt<S>, &softmax_piece_scaled<S>,
      &log_softmax_piece_scaled<S>, &softmax_rows_opt<S>, &log_softmax_rows_opt<S>,
      &logsumexp_rows_opt<S>, &exp_array<S>, &exp_nonpositive_array<S>,
  };
}

template <class S>
constexpr LossKernels<S> loss_kernels() {
  return LossKernels<S>{
      &cross_entropy_rows<S>,    &cross_entropy_cols<S>,   &entropy_rows<S>, &entropy_rows_opt<S>, &kl_divergence_rows<S>,
      &softmax_backward_rows<S>, &log_softmax_backward_rows<S>, &sigmoid_array<S>,
      &log_sigmoid_array<S>,     &bce_rows<S>,              &cross_entropy_rows_options<S>,
  };
}

}  // namespace

const KernelTable* kernel_table() {
  static const KernelTable table{LOGITKIT_TARGET_NAME,       LOGITKIT_VECTOR_BYTES,
                                 softmax_kernels<float>(),    softmax_kernels<double>(),
                                 softmax_kernels<Float16>(),  softmax_kernels<BFloat16>(),
                                 loss_kernels<float>(),       loss_kernels<double>(),
                                 loss_kernels<Float16>(),     loss_kernels<BFloat16>()};
  return &table;
}

}  // namespace LOGITKIT_TARGET_NS
}  // namespace logitkit
