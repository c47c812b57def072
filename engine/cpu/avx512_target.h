// Compiles the code between AKVQ_AVX512_BEGIN and AKVQ_AVX512_END for AVX-512 F/BW/VL/DQ + VNNI +
// BF16, whatever the build's -march, so that an AVX2 build carries the AVX-512 kernels and picks
// them at run time (cpu/isa.h). Only functions defined between the two marks get the target:
// templates and inline functions of headers included before BEGIN keep the build's ISA, so no
// AVX-512 code can leak into the rest of the program through a shared inline definition.
// Include every header (and <immintrin.h>) before AKVQ_AVX512_BEGIN. The header also holds the
// AVX-512 tiles' prefetch distance (kAvx512PrefetchAhead).
#pragma once

#if defined(AKVQ_HAVE_AVX512_KERNELS)
#include <immintrin.h>

#if defined(__clang__)
// _Pragma takes one string literal: the line must not be split.
// clang-format off
#define AKVQ_AVX512_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c\"))), apply_to = function)")
// clang-format on
#define AKVQ_AVX512_END _Pragma("clang attribute pop")
#else
// GCC 12 reports the _mm512_undefined_* placeholders inside its own intrinsics (slli, cvt,
// permutexvar ...) as uninitialized once they are inlined into a target region: silenced here only.
#define AKVQ_AVX512_BEGIN                                                                               \
  _Pragma("GCC push_options")                                                                           \
      _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c\")") \
          _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")          \
              _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define AKVQ_AVX512_END _Pragma("GCC diagnostic pop") _Pragma("GCC pop_options")
#endif

namespace akvq::cpu {
// Bytes the AVX-512 tiles prefetch ahead of the weights being read, per row, whatever the tokens
// per tile (cpu::prefetch_ahead<kAvx512PrefetchAhead>, cpu/simd.h): a batched decode step streams
// the weights from memory as decode does (the AVX2 tiles' distance is kAvx2PrefetchAhead). 1.1B decode from DRAM on a 2-core Zen 5 VM
// (akvq-cli tg128, 3 interleaved rounds, median t/s, Q4_0 / Q4_K): 2048: 52 / 51, 8192: 62 / 61,
// 16384: 55 / 59, 32768: 59 / 58. Prefetching in the several-token tiles too: SmolLM2 batch-8
// decode 1.77-1.95x -> 2.47-3.29x one stream (bench/batch_decode.py, 3 interleaved rounds). These
// figures are of L1 requests; the requests go into the L2 now (cpu::prefetch_ahead). With L2
// requests on a 2-core Zen 4 VM (step-level A/B of decode steps against 8192, bench/RESULTS.md):
// 1.1B Q4_0 decode 2048: -16%, 4096: +2%, 6144: +5%, 16384: -1%, 32768: -4% (against 6144: 5120
// 0%, 7168 -2%); at 6144 1.1B Q4_K decode +4%, SmolLM2 decode +4%, SmolLM2 batch 8 and prefill
// unchanged.
constexpr int kAvx512PrefetchAhead = 6144;
}  // namespace akvq::cpu

#endif
