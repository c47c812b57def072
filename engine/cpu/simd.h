// Small SIMD helpers shared by the CPU kernels: weight prefetch, horizontal sums, fp16/bf16 loads, exp.
// AVX2 ones when AVX2+FMA+F16C are compiled in (AKVQ_AVX2); on 64-bit ARM (AKVQ_NEON) the NEON
// kernels live in the *_neon.cpp files next to the AVX2 ones. Callers keep a scalar fallback.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <cstddef>

#include "cpu/prefetch.h"

namespace akvq::cpu {

// Software prefetch of the weights ahead of the x86 tiles, whatever their token count (decode and
// a batched decode step stream every weight from DRAM once per step; past a row's end this fetches
// the rows the next tiles read). The AVX2 distance in bytes: 512 / 1024 / 2048 measured 8.2 / 7.2 /
// 6.7 ms per SmolLM2 decode step (weights mostly in cache); 1.1B Q4_0 decode from DRAM on a 2-core
// Zen 3 VM, tokens/s: 2048: 13-16, 4096: 20-22, 8192: 21-23, 16384: 23-24, 32768: 22-24 (4
// interleaved rounds, akvq-cli; these distances were measured with L1 requests). The AVX-512
// tiles' distance: kAvx512PrefetchAhead (cpu/avx512_target.h).
//
// Requested into the L2 (cpu::prefetch_line_l2), not the L1: 8-16 KB ahead is a quarter to half of
// a 32 KB L1 (Zen 3, Zen 4), where the requested lines evicted the activations and partial sums the
// tiles were using. 2-core Zen 4 VM, the same binary switched between L1 and L2 requests every
// 0.2-0.6 s, medians of 8-25 windows (bench/RESULTS.md): SmolLM2 decode 186-194 -> 214-216 tok/s,
// its batch-8 step 732-739 -> 762-767 tok/s; 1.1B decode Q4_K 40.6 -> 44.9, Q4_0 44.6 -> 45.6; the
// AVX2 tiles (AKVQ_ISA=avx2) Q8_0 18.2 -> 24.2, Q4_0 43.7 -> 51.6; prefill unchanged.
constexpr int kAvx2PrefetchAhead = 16384;

// Requests the cache lines of [p + Ahead, p + Ahead + bytes) into the L2 (cpu::prefetch_line_l2).
template <int Ahead = kAvx2PrefetchAhead>
inline void prefetch_ahead(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p) + Ahead;
  for (size_t o = 0; o < bytes; o += 64) prefetch_line_l2(c + o);
}

}  // namespace akvq::cpu
#endif

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define AKVQ_AVX2 1
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace akvq::cpu {

// The 4 bytes at p (two int16 or four int8 values of a token) in every 32-bit lane: the
// broadcast operand of the interleaved-row tiles, whose lanes are weight rows.
inline __m256i bcast32(const void* p) {
  return _mm256_castps_si256(_mm256_broadcast_ss(static_cast<const float*>(p)));
}

// y[t * ldy + r] = acc[t] lane r + mul * accm[t] lane r for r < 8, t < T (lanes = rows).
template <int T>
inline void store_row_lanes(const __m256* acc, const __m256* accm, float mul, float* y, int64_t ldy) {
  for (int t = 0; t < T; ++t) {
    alignas(32) float a[8], m[8];
    _mm256_store_ps(a, acc[t]);
    _mm256_store_ps(m, accm[t]);
    for (int r = 0; r < 8; ++r) y[t * ldy + r] = a[r] + mul * m[r];
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline __m256 load_bf16x8(const uint16_t* p) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

// e^x, relative error < 2e-7 for x in [-87, 88]; inputs are clamped to that range
// (so exp(-inf) returns ~1e-38 instead of 0, exp(+inf) returns ~1.6e38).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);  // ln2 hi part
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);      // ln2 lo part
  // Taylor polynomial of e^r to degree 7 on |r| <= 0.347: truncation error < 5e-9.
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

}  // namespace akvq::cpu
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define AKVQ_NEON 1
#include <arm_neon.h>

#include <cstdint>

namespace akvq::cpu {

// 4 fp16 values -> f32 (exact; fcvtl is part of baseline ARMv8-A).
inline float32x4_t load_f16x4(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

// 4 bf16 values -> f32 (bf16 is the top half of an f32).
inline float32x4_t load_bf16x4(const uint16_t* p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

inline float f16_to_f32_neon(uint16_t h) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

}  // namespace akvq::cpu
#endif
