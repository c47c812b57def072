// Run-time ISA choice (isa.h).
#include "cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/simd.h"

namespace akvq::cpu {

namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  f.avx512_vnni = __builtin_cpu_supports("avx512vnni");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  return f;
}

Isa compiled_best() {
#if defined(AKVQ_HAVE_AVX512_KERNELS)
  const CpuFeatures& f = cpu_features();
  if (f.avx512 && f.avx512_vnni && f.avx512_bf16) return Isa::Avx512;
#endif
#if defined(AKVQ_AVX2)
  return Isa::Avx2;
#elif defined(AKVQ_NEON)
  return Isa::Neon;
#else
  return Isa::Scalar;
#endif
}

Isa env_cap() {
  const char* v = std::getenv("AKVQ_ISA");
  if (!v || !*v) return Isa::Avx512;
  if (std::strcmp(v, "scalar") == 0) return Isa::Scalar;
  if (std::strcmp(v, "avx2") == 0 || std::strcmp(v, "neon") == 0) return Isa::Avx2;
  return Isa::Avx512;  // "avx512" or anything else: no cap
}

std::atomic<int> g_cap{-1};  // -1: not read yet

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool avx512_compiled() {
#if defined(AKVQ_HAVE_AVX512_KERNELS)
  return true;
#else
  return false;
#endif
}

Isa active_isa() {
  int cap = g_cap.load(std::memory_order_relaxed);
  if (cap < 0) {
    cap = static_cast<int>(env_cap());
    g_cap.store(cap, std::memory_order_relaxed);
  }
  const Isa best = compiled_best();
  if (static_cast<int>(best) <= cap) return best;
  // Capped: the AVX2 / NEON kernels when the cap allows them, else scalar.
  if (cap >= static_cast<int>(Isa::Avx2) || (cap == static_cast<int>(Isa::Neon) && best == Isa::Neon)) {
#if defined(AKVQ_AVX2)
    return Isa::Avx2;
#elif defined(AKVQ_NEON)
    return Isa::Neon;
#endif
  }
  return Isa::Scalar;
}

void set_isa_cap(Isa cap) {
  g_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Neon: return "neon";
    default: return "scalar";
  }
}

}  // namespace akvq::cpu
