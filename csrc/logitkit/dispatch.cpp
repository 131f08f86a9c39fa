#include "dispatch.hpp"

#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <immintrin.h>
#include <intrin.h>
#define LOGITKIT_X86 1
#elif defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LOGITKIT_X86 1
#endif

namespace logitkit {

// Each target's translation unit defines its table (kernels_target.cpp).
namespace target_baseline {
const KernelTable* kernel_table();
}
#ifdef LOGITKIT_HAVE_AVX2
namespace target_avx2 {
const KernelTable* kernel_table();
}
#endif
#ifdef LOGITKIT_HAVE_AVX512
namespace target_avx512 {
const KernelTable* kernel_table();
}
#endif

namespace {

struct Target {
  const char* name;
  const KernelTable* (*table)();
  bool (*cpu_can_run)();
};

#ifdef LOGITKIT_X86
void cpuid(std::uint32_t leaf, std::uint32_t subleaf, std::uint32_t regs[4]) {
#ifdef _MSC_VER
  int r[4];
  __cpuidex(r, static_cast<int>(leaf), static_cast<int>(subleaf));
  for (int i = 0; i < 4; ++i) regs[i] = static_cast<std::uint32_t>(r[i]);
#else
  __cpuid_count(leaf, subleaf, regs[0], regs[1], regs[2], regs[3]);
#endif
}

std::uint64_t read_xcr0() {
#ifdef _MSC_VER
  return _xgetbv(0);
#else
  std::uint32_t eax, edx;
  // xgetbv by opcode, so this file needs no -mxsave.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
#endif
}

struct X86Features {
  bool avx2_fma = false;  // AVX2 + FMA + F16C
  bool avx512 = false;  // F + DQ + BW + VL, with the OS saving ZMM state
};

X86Features detect_x86() {
  X86Features f;
  std::uint32_t r[4];
  cpuid(0, 0, r);
  const std::uint32_t max_leaf = r[0];
  if (max_leaf < 7) return f;
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1;
  const bool avx = (r[2] >> 28) & 1;
  const bool fma = (r[2] >> 12) & 1;
  const bool f16c = (r[2] >> 29) & 1;
  if (!osxsave || !avx) return f;
  const std::uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE and AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;   // plus opmask, ZMM_Hi256, Hi16_ZMM
  cpuid(7, 0, r);
  const std::uint32_t ebx = r[1];
  const bool avx2 = (ebx >> 5) & 1;
  const bool avx512f = (ebx >> 16) & 1, avx512dq = (ebx >> 17) & 1;
  const bool avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1;
  f.avx2_fma = os_ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2_fma && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}

const X86Features& x86_features() {
  static const X86Features features = detect_x86();
  return features;
}
#endif

bool always() { return true; }
#ifdef LOGITKIT_HAVE_AVX2
bool cpu_has_avx2() { return x86_features().avx2_fma; }
#endif
#ifdef LOGITKIT_HAVE_AVX512
bool cpu_has_avx512() { return x86_features().avx512; }
#endif

const std::vector<Target>& all_targets() {
  static const std::vector<Target> targets = {
#if defined(__aarch64__) || defined(_M_ARM64)
      {"neon", &target_baseline::kernel_table, &always},
#else
      {"baseline", &target_baseline::kernel_table, &always},
#endif
#ifdef LOGITKIT_HAVE_AVX2
      {"avx2", &target_avx2::kernel_table, &cpu_has_avx2},
#endif
#ifdef LOGITKIT_HAVE_AVX512
      {"avx512", &target_avx512::kernel_table, &cpu_has_avx512},
#endif
  };
  return targets;
}

// Target names match in any case ("AVX2" is "avx2"), ignoring surrounding blanks, so that
// LOGITKIT_SIMD=AVX2 works as a user would expect.
const Target* find_target(const std::string& name) {
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  std::size_t begin = 0, end = name.size();
  while (begin < end && blank(name[begin])) ++begin;
  while (end > begin && blank(name[end - 1])) --end;
  for (const Target& t : all_targets()) {
    const std::string target_name = t.name;
    if (target_name.size() != end - begin) continue;
    bool same = true;
    for (std::size_t i = 0; i < target_name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(name[begin + i])) == target_name[i];
    if (same) return &t;
  }
  return nullptr;
}

std::string target_list() {
  std::string names;
  for (const Target& t : all_targets()) names += (names.empty() ? "" : ", ") + std::string(t.name);
  return names;
}

const KernelTable* choose_initial() {
  const char* forced = std::getenv("LOGITKIT_SIMD");
  if (forced && *forced) {
    const Target* t = find_target(forced);
    // An unknown or unsupported forced target is reported when the module is imported
    // (the bindings call active_kernels() then), not silently replaced by another one.
    if (!t)
      throw std::invalid_argument(std::string("LOGITKIT_SIMD=") + forced +
                                  " is not a compiled-in SIMD target (compiled: " +
                                  target_list() + ")");
    if (!t->cpu_can_run())
      throw std::invalid_argument(std::string("LOGITKIT_SIMD=") + forced +
                                  " is not supported by this CPU");
    return t->table();
  }
  const KernelTable* best = nullptr;
  for (const Target& t : all_targets())
    if (t.cpu_can_run()) best = t.table();
  return best;
}

std::atomic<const KernelTable*>& active_slot() {
  static std::atomic<const KernelTable*> slot{choose_initial()};
  return slot;
}

}  // namespace

std::vector<std::string> compiled_targets() {
  std::vector<std::string> names;
  for (const Target& t : all_targets()) names.emplace_back(t.name);
  return names;
}

std::vector<std::string> supported_targets() {
  std::vector<std::string> names;
  for (const Target& t : all_targets())
    if (t.cpu_can_run()) names.emplace_back(t.name);
  return names;
}

const KernelTable& active_kernels() {
  return *active_slot().load(std::memory_order_acquire);
}

std::string set_active_target(const std::string& name) {
  const Target* t = find_target(name);
  if (!t)
    throw std::invalid_argument("unknown SIMD target '" + name + "' (compiled: " +
                                target_list() + ")");
  if (!t->cpu_can_run())
    throw std::invalid_argument("SIMD target '" + name + "' is not supported by this CPU");
  const KernelTable* previous = active_slot().exchange(t->table(), std::memory_order_acq_rel);
  return previous->name;
}

}  // namespace logitkit
