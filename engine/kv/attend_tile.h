// Portable building blocks of the tiled attention (kv_f16_attend.cpp, and the fp16 rows of
// kv_quant_attend.cpp), written as plain loops over float arrays that the compiler vectorizes
// (-O3, -march=native), with intrinsics only where the ISA has them: fp16 -> f32 conversion
// (F16C, NEON, else branch-free scalar), FMA, and exp() for x <= 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/prefetch.h"

#if defined(__AVX__) || defined(__F16C__) || defined(__FMA__)
#include <immintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace akvq::kv::tile {

// 8-float vectors (GCC/Clang vector extensions: portable SIMD without ISA intrinsics).
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));  // unaligned access
inline v8 load8(const float* p) { return *reinterpret_cast<const v8u*>(p); }
inline void store8(float* p, v8 v) { *reinterpret_cast<v8u*>(p) = v; }
inline v8 splat8(float x) { return v8{x, x, x, x, x, x, x, x}; }

// y[n] = fp16 x[n] without conversion instructions (exact for zero, subnormals and normals;
// inf/nan map to inf/nan).
inline void f16_to_f32_scalar(const uint16_t* x, float* y, int n) {
  for (int i = 0; i < n; ++i) {
    const uint32_t h = x[i];
    const uint32_t em = (h & 0x7fffu) << 13;  // exponent+mantissa moved to f32 position
    float f;
    std::memcpy(&f, &em, 4);
    f *= 5.192296858534828e+33f;  // 2^112 rebiases the exponent (15 -> 127), subnormals too
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b |= ((h & 0x7c00u) == 0x7c00u) ? 0x7f800000u : 0u;  // inf / nan
    b |= (h & 0x8000u) << 16;
    std::memcpy(&y[i], &b, 4);
  }
}

// 8 floats from 8 fp16 values, exact: the F16C instruction on x86, the NEON widening conversion
// on 64-bit ARM, else f16_to_f32_scalar.
#if defined(__F16C__) || (defined(__aarch64__) && defined(__ARM_NEON))
constexpr bool kHardwareF16 = true;
#else
constexpr bool kHardwareF16 = false;
#endif
inline v8 load8h(const uint16_t* p) {
#if defined(__F16C__)
  return reinterpret_cast<v8>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__aarch64__) && defined(__ARM_NEON)
  const float32x4_t lo = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
  const float32x4_t hi = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p + 4)));
  v8 r;
  std::memcpy(&r, &lo, 16);
  std::memcpy(reinterpret_cast<char*>(&r) + 16, &hi, 16);
  return r;
#else
  float y[8];
  f16_to_f32_scalar(p, y, 8);
  return load8(y);
#endif
}
inline float load1h(const uint16_t* p) {
  float y;
  f16_to_f32_scalar(p, &y, 1);
  return y;
}

// y[n] = fp16 x[n], exact (inf/nan map to inf/nan): 8 values at a time by load8h where the ISA
// converts, the rest by f16_to_f32_scalar.
inline void f16_to_f32(const uint16_t* x, float* y, int n) {
  int i = 0;
  if constexpr (kHardwareF16) {
    for (; i + 8 <= n; i += 8) store8(y + i, load8h(x + i));
  }
  f16_to_f32_scalar(x + i, y + i, n - i);
}

// K/V rows of one head requested ahead of their conversion to f32. A head's row is hd halves out
// of every token's row (all KV heads of a token are stored together), and the hardware prefetcher
// ramps up too late on such short strided runs (decode of a short sequence, batched decode, the
// 2-bit cache's fp16 window): perf showed the loads stalling 60% of the f16 attention's time.
constexpr int kPrefetchRows = 8;

using cpu::prefetch_span;  // the cache lines of a span (cpu/prefetch.h)

// The cache lines of x[0, n) (a K or V row of one head), ahead of its conversion.
template <bool L2 = false>
inline void prefetch_row(const uint16_t* x, int n) {
  prefetch_span<L2>(x, static_cast<size_t>(n) * 2);
}

// The next block's K and V rows of one head (n rows of `width` halves at k + u * stride and
// v + u * stride), requested by the decode scores kernels a row or two per token of the current
// block, so that the next block's loads overlap this block's arithmetic. Against requesting each
// block whole at its start: f16 decode attention, SmolLM2 shape, Zen 5, 8 sequences of 200 tokens
// 1.85 -> 1.30 ms per step, one sequence of 2000 tokens 3.85 -> 2.29 ms (bench/RESULTS.md).
// The requests fill the L2, not the L1: a block's rows of every KV head of an item, this block's
// and the next's, are more than an L1 of 32-48 KB holds (SmolLM2, 3 KV heads: 2 x 48 KB), so rows
// requested into the L1 a block ahead were evicted before their use. Zen 4, tools_attend_bench
// from memory: one sequence of 8192 tokens 6-7 -> 10-11 GB/s, 8 of 200 14-16 -> 19-22 GB/s.
struct Ahead {
  const uint16_t* k = nullptr;
  const uint16_t* v = nullptr;
  int64_t stride = 0;
  int width = 0;
  int n = 0;  // 0: nothing to request
};

// Requests rows [u0, min(u1, a.n)) of a.
inline void request_ahead(const Ahead& a, int u0, int u1) {
  for (int u = u0; u < std::min(u1, a.n); ++u) {
    prefetch_row<true>(a.k + u * a.stride, a.width);
    prefetch_row<true>(a.v + u * a.stride, a.width);
  }
}

// a * b + c, fused where the ISA has FMA. Written out because GCC's tuning for AMD Zen may split a
// loop's a * b + c chain into a multiply and an add in one loop and not in another (avoid-FMA-chain
// heuristics), and two loops that must agree bit for bit (prefill and decode) would then differ.
inline v8 fma8(v8 a, v8 b, v8 c) {
#if defined(__FMA__)
  return reinterpret_cast<v8>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b),
                                              reinterpret_cast<__m256>(c)));
#else
  return a * b + c;
#endif
}

// a * b + c in one rounding where the CPU has FMA (vectorized as such), else two.
inline float fma1(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(v) for v <= 0 (relative error < 3e-7; v < -87, -inf and nan give ~1e-38): 2^round(v / ln2)
// times a degree-6 polynomial of the remainder. Scalar code that loops vectorize at the widest
// width; the explicit fma1 keep every caller's bits the same (a compiler's contraction choice can
// differ between loops).
inline float exp_nonpos1(float x) {
  uint32_t u;  // clamp to -87 with an integer min: for x <= 0 larger bits = more negative
  std::memcpy(&u, &x, 4);
  u = std::min(u, 0xC2AE0000u);  // bits of -87.0f; also maps -inf / nan to -87
  float v;
  std::memcpy(&v, &u, 4);
  const float t = fma1(v, 1.44269504f, 12582912.0f);  // + 1.5 * 2^23 rounds to an integer
  uint32_t tb;
  std::memcpy(&tb, &t, 4);
  const float fn = t - 12582912.0f;                                       // round(v / ln2)
  const float r = fma1(fn, -1.42860677e-6f, fma1(fn, -0.693145752f, v));  // |r| <= ln2/2
  float p = 1.0f / 720.0f;
  p = fma1(p, r, 1.0f / 120.0f);
  p = fma1(p, r, 1.0f / 24.0f);
  p = fma1(p, r, 1.0f / 6.0f);
  p = fma1(p, r, 0.5f);
  p = fma1(p, r, 1.0f);
  p = fma1(p, r, 1.0f);
  const uint32_t bits = (tb - 0x4B400000u + 127u) << 23;  // 2^round(v / ln2)
  float s;
  std::memcpy(&s, &bits, 4);
  return p * s;
}

// x[n] = exp(x[n]) for x <= 0 (exp_nonpos1).
inline void exp_nonpos(float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = exp_nonpos1(x[i]);
}

inline v8 load8k(const float* p) { return load8(p); }
inline v8 load8k(const uint16_t* p) { return load8h(p); }
inline float load1k(const float* p) { return *p; }
inline float load1k(const uint16_t* p) { return load1h(p); }

// The 8 lane sums of q · kj over the first hd / 8 * 8 values: two accumulators over 16-wide steps
// (the second only where 16 fit), added. load8k reads kj as float or fp16 (the same values).
template <class K>
inline v8 dot_lanes(const float* q, const K* kj, int hd) {
  v8 a0 = {}, a1 = {};
  int d = 0;
  for (; d + 16 <= hd; d += 16) a0 = fma8(load8(q + d), load8k(kj + d), a0), a1 = fma8(load8(q + d + 8), load8k(kj + d + 8), a1);
  for (; d + 8 <= hd; d += 8) a0 = fma8(load8(q + d), load8k(kj + d), a0);
  return a0 + a1;
}
// ((0+1) + (2+3)) + ((4+5) + (6+7)) of the lanes.
inline float hsum_lanes(v8 a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// s[j] = q · row(j)[0:hd] for j < n, row(j) a float or fp16 row (a callable returning its
// pointer). The summation order depends only on hd, so a row's scores are bit-identical however
// queries are batched (prefill == decode), however the rows are laid out and whether they hold
// float or fp16 values. Where hd is a multiple of 8 and AVX is compiled in, 4 rows' lane sums are
// reduced together with the same pairwise adds (horizontal adds pair lanes (0,1), (2,3), ...).
template <class RowAt>
inline void scores_at(const float* q, RowAt row, int n, int hd, float* s) {
  int j = 0;
#if defined(__AVX__)
  if (hd % 8 == 0) {
    for (; j + 4 <= n; j += 4) {
      const __m256 a0 = reinterpret_cast<__m256>(dot_lanes(q, row(j), hd));
      const __m256 a1 = reinterpret_cast<__m256>(dot_lanes(q, row(j + 1), hd));
      const __m256 a2 = reinterpret_cast<__m256>(dot_lanes(q, row(j + 2), hd));
      const __m256 a3 = reinterpret_cast<__m256>(dot_lanes(q, row(j + 3), hd));
      // [r0 (0+1), r0 (2+3), r1 (0+1), r1 (2+3) | r0 (4+5), r0 (6+7), r1 (4+5), r1 (6+7)]
      const __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
      // [r0..r3 ((0+1) + (2+3)) | r0..r3 ((4+5) + (6+7))]
      const __m256 h = _mm256_hadd_ps(h01, h23);
      _mm_storeu_ps(s + j, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    }
  }
#endif
  for (; j < n; ++j) {
    const auto* kj = row(j);
    float t = hsum_lanes(dot_lanes(q, kj, hd));
    for (int d = hd / 8 * 8; d < hd; ++d) t = std::fma(q[d], load1k(kj + d), t);
    s[j] = t;
  }
}

// s[j] = q · k[j, 0:hd] for j < n, k [n, hd] row-major (scores_at).
inline void scores_dot(const float* q, const float* k, int n, int hd, float* s) {
  scores_at(q, [&](int j) { return k + static_cast<int64_t>(j) * hd; }, n, hd, s);
}

// scores_dot on fp16 rows k[j * ld + 0:hd] read in place, bit-identical to converting the rows
// first (used where few rows share a K row: decode).
inline void scores_dot_h(const float* q, const uint16_t* k, int n, int hd, int64_t ld, float* s) {
  scores_at(q, [&](int j) { return k + j * ld; }, n, hd, s);
}

// acc[0:8*NV] += Σ_j p[j] * row(j)[d0 + 0:8*NV], accumulators in registers.
template <int NV, class RowAt>
inline void pv_chunk(const float* p, int n, RowAt row, int d0, float* acc) {
  v8 a[NV];
  for (int c = 0; c < NV; ++c) a[c] = load8(acc + 8 * c);
  for (int j = 0; j < n; ++j) {
    const v8 pj = splat8(p[j]);
    const auto* vj = row(j) + d0;
    for (int c = 0; c < NV; ++c) a[c] = fma8(pj, load8k(vj + 8 * c), a[c]);
  }
  for (int c = 0; c < NV; ++c) store8(acc + 8 * c, a[c]);
}

// acc[hd] += Σ_j p[j] * row(j)[0:hd], row(j) a float or fp16 row (bit-identical either way).
template <class RowAt>
inline void pv_at(const float* p, int n, RowAt row, int hd, float* acc) {
  int d = 0;
  for (; d + 64 <= hd; d += 64) pv_chunk<8>(p, n, row, d, acc + d);
  for (; d + 32 <= hd; d += 32) pv_chunk<4>(p, n, row, d, acc + d);
  for (; d + 8 <= hd; d += 8) pv_chunk<1>(p, n, row, d, acc + d);
  for (; d < hd; ++d) {
    float a = acc[d];
    for (int j = 0; j < n; ++j) a = std::fma(p[j], load1k(row(j) + d), a);
    acc[d] = a;
  }
}

// acc[hd] += Σ_j p[j] * v[j, 0:hd] for v [n, hd] row-major.
inline void pv(const float* p, int n, const float* v, int hd, float* acc) {
  pv_at(p, n, [&](int j) { return v + static_cast<int64_t>(j) * hd; }, hd, acc);
}

// pv on fp16 rows v[j * ld + 0:hd] read in place (bit-identical to converting them first).
inline void pv_h(const float* p, int n, const uint16_t* v, int hd, int64_t ld, float* acc) {
  pv_at(p, n, [&](int j) { return v + j * ld; }, hd, acc);
}

// Decode with GQA: the R query heads of one KV head read the same fp16 K/V rows. The two kernels
// below convert each row once for all R rows (the per-row kernels above convert it once per row,
// and the conversion, not the FMA, bounds them: one ymm conversion per cycle on Zen 3). Each row's
// products and sums run in the same order as in scores_dot_h / pv_h, so the results are the same
// bits. kMaxRows bounds R (the accumulators must stay in the 16 ymm registers).
constexpr int kMaxRows = 4;

// s[r * lds + j] = q[r * ldq + 0:hd] · row(j)[0:hd] for r < R, j < n, row(j) an fp16 row (a
// callable returning its pointer), hd a multiple of 8: scores_at of each row (same lane sums, same
// pairwise reduction).
template <int R, class RowAt>
inline void scores_rows_h(const float* q, int ldq, RowAt row, int n, int hd, float* s, int lds, const Ahead& ahead) {
  static_assert(R >= 1 && R <= kMaxRows, "rows per call");
  for (int j = 0; j < n; ++j) {
    request_ahead(ahead, j, j + 1);
    const uint16_t* kj = row(j);
    v8 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = splat8(0.0f);
    int d = 0;
    for (; d + 16 <= hd; d += 16) {
      const v8 k0 = load8h(kj + d), k1 = load8h(kj + d + 8);
      for (int r = 0; r < R; ++r) {
        a0[r] = fma8(load8(q + r * ldq + d), k0, a0[r]);
        a1[r] = fma8(load8(q + r * ldq + d + 8), k1, a1[r]);
      }
    }
    for (; d + 8 <= hd; d += 8) {
      const v8 k0 = load8h(kj + d);
      for (int r = 0; r < R; ++r) a0[r] = fma8(load8(q + r * ldq + d), k0, a0[r]);
    }
#if defined(__AVX__)
    // The pairwise sums of up to 4 rows at once, as scores_at's 4-row reduction does.
    __m256 x[4];
    for (int r = 0; r < 4; ++r) x[r] = reinterpret_cast<__m256>(a0[r < R ? r : 0] + a1[r < R ? r : 0]);
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(x[0], x[1]), _mm256_hadd_ps(x[2], x[3]));
    alignas(16) float t[4];
    _mm_store_ps(t, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    for (int r = 0; r < R; ++r) s[r * lds + j] = t[r];
#else
    for (int r = 0; r < R; ++r) s[r * lds + j] = hsum_lanes(a0[r] + a1[r]);
#endif
  }
  request_ahead(ahead, n, ahead.n);  // a next block longer than this one (a masked tail)
}

// acc[r * lda + d0 + 0:8*NV] += Σ_j p[r * ldp + j] * row(j)[d0 + 0:8*NV] for r < R.
template <int R, int NV, class RowAt>
inline void pv_rows_chunk_h(const float* p, int ldp, int n, RowAt row, int d0, float* acc, int lda) {
  v8 a[R][NV];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < NV; ++c) a[r][c] = load8(acc + r * lda + d0 + 8 * c);
  }
  for (int j = 0; j < n; ++j) {
    const uint16_t* vj = row(j) + d0;
    v8 pj[R];
    for (int r = 0; r < R; ++r) pj[r] = splat8(p[r * ldp + j]);
    for (int c = 0; c < NV; ++c) {
      const v8 x = load8h(vj + 8 * c);
      for (int r = 0; r < R; ++r) a[r][c] = fma8(pj[r], x, a[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < NV; ++c) store8(acc + r * lda + d0 + 8 * c, a[r][c]);
  }
}

// acc[r * lda + 0:hd] += Σ_j p[r * ldp + j] * row(j)[0:hd] for r < R, row(j) an fp16 row, hd a
// multiple of 8: pv_at of each row (every lane is the same chain of FMAs over j; only the split of
// hd differs).
template <int R, class RowAt>
inline void pv_rows_h(const float* p, int ldp, int n, RowAt row, int hd, float* acc, int lda) {
  static_assert(R >= 1 && R <= kMaxRows, "rows per call");
  constexpr int NV = R <= 3 ? 4 : 2;  // R * NV accumulators + R weights + 1 value <= 16 registers
  int d = 0;
  for (; d + 8 * NV <= hd; d += 8 * NV) pv_rows_chunk_h<R, NV>(p, ldp, n, row, d, acc, lda);
  for (; d + 8 <= hd; d += 8) pv_rows_chunk_h<R, 1>(p, ldp, n, row, d, acc, lda);
}

// Calls f(std::integral_constant<int, R>{}, r) for consecutive runs of rows [r, r + R) that cover
// [0, rows), R <= kMaxRows: the number of rows as a compile-time constant for the row kernels.
template <class F>
inline void in_row_calls(int rows, F&& f) {
  for (int r = 0; r < rows; r += kMaxRows) {
    switch (std::min(kMaxRows, rows - r)) {
      case 1: f(std::integral_constant<int, 1>{}, r); break;
      case 2: f(std::integral_constant<int, 2>{}, r); break;
      case 3: f(std::integral_constant<int, 3>{}, r); break;
      default: f(std::integral_constant<int, kMaxRows>{}, r); break;
    }
  }
}

// scores_rows_h / pv_rows_h for any number of rows, in calls of at most kMaxRows (the first call
// requests `ahead`).
template <class RowAt>
inline void scores_rows_h(int rows, const float* q, int ldq, RowAt row, int n, int hd, float* s, int lds,
                          const Ahead& ahead = {}) {
  in_row_calls(rows, [&](auto R, int r) {
    scores_rows_h<R()>(q + r * ldq, ldq, row, n, hd, s + r * lds, lds, r == 0 ? ahead : Ahead{});
  });
}
template <class RowAt>
inline void pv_rows_h(int rows, const float* p, int ldp, int n, RowAt row, int hd, float* acc, int lda) {
  in_row_calls(rows, [&](auto R, int r) { pv_rows_h<R()>(p + r * ldp, ldp, n, row, hd, acc + r * lda, lda); });
}

// Sum and max of x[n] (n a multiple of 8) with 8 independent lanes, combined in a fixed tree:
// GCC's vector extension, so both compile to packed adds / maxes whatever the reassociation flags
// (lane l of the max is x[l] > y ? x[l] : y, the scalar select, lane by lane).
inline float sum8(const float* x, int n) {
  v8 p = splat8(0.0f);
  for (int j = 0; j < n; j += 8) p += load8(x + j);
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}
inline float max8(const float* x, int n) {
  v8 p = load8(x);
  for (int j = 8; j < n; j += 8) {
    const v8 v = load8(x + j);
    p = p > v ? p : v;
  }
  float m = p[0];
  for (int l = 1; l < 8; ++l) m = m > p[l] ? m : p[l];
  return m;
}

// For x[n] (n a multiple of 8) with masked entries -inf and a finite m >= every visible entry:
// x[j] = exp(x[j] - m) where visible, 0 where masked; returns Σ x in sum8's order. Two passes (it
// was four: visibility, exp, mask, sum), both vectorized at the widest width.
inline float exp_visible_sum(float* x, int n, float m) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; ++j) {
    const bool on = x[j] > ninf;
    const float e = exp_nonpos1(on ? x[j] - m : 0.0f);
    x[j] = on ? e : 0.0f;
  }
  return sum8(x, n);
}

// Split-K merge. partial: [pairs, n_split, 2 + hd] rows of (running max m, sum l, acc[hd]) from
// independent sequence ranges; an empty range has l == 0. out[pairs, hd] =
// Σ_s exp(m_s - M)·acc_s / Σ_s exp(m_s - M)·l_s with M the max over non-empty ranges.
inline void merge_split_partials(const float* partial, int64_t pairs, int n_split, int hd, float* out) {
  const int64_t pstride = 2 + hd;
  for (int64_t r = 0; r < pairs; ++r) {
    const float* pr = partial + r * n_split * pstride;
    float M = -std::numeric_limits<float>::infinity();
    for (int s = 0; s < n_split; ++s) {
      if (pr[s * pstride + 1] > 0.0f) M = std::max(M, pr[s * pstride]);
    }
    float* o = out + r * hd;
    std::fill(o, o + hd, 0.0f);
    float total = 0.0f;
    for (int s = 0; s < n_split; ++s) {
      const float* ps = pr + s * pstride;
      if (ps[1] == 0.0f) continue;  // empty range (beyond the causal limit)
      const float w = std::exp(ps[0] - M);
      total += w * ps[1];
      for (int d = 0; d < hd; ++d) o[d] += w * ps[2 + d];
    }
    const float inv = 1.0f / total;
    for (int d = 0; d < hd; ++d) o[d] *= inv;
  }
}

// Query heads per work item of a GQA group of `group` heads, for `units` (kv head, query block,
// sequence range) triples on `nth` threads: a divisor h of group. An item converts or decodes its
// K/V blocks once for its h heads, so its cost is about (1 + h) per token (the blocks, then h
// score and value passes), and the step takes ceil(items / nth) rounds of items. Returns the h
// of the least ceil(units * group / h / nth) * (1 + h), the larger h on a tie. A row's arithmetic
// does not depend on h, only the split of the work does.
// Example: 4 kv heads in groups of 8, 2 threads, one query: h = 8 (2 rounds of 9) beats h = 1
// (16 rounds of 2).
inline int heads_per_item(int group, int units, int nth) {
  int best = group;
  int64_t best_cost = -1;
  for (int h = group; h >= 1; --h) {
    if (group % h != 0) continue;
    const int64_t items = static_cast<int64_t>(units) * (group / h);
    const int64_t cost = (items + nth - 1) / nth * (1 + h);
    if (best_cost < 0 || cost < best_cost) best = h, best_cost = cost;
  }
  return best;
}

// KV heads per work item when an item takes whole GQA groups: the largest divisor c of n_head_kv
// with c * hd <= kItemWidth (the item's K and V blocks, 2 * 64 * c * hd floats, stay in L2) whose
// step is no longer than one head per item's, for `units` (query block, sequence range) pairs per
// KV head on `nth` threads: ceil(n_head_kv * units / c / nth) * c <= ceil(n_head_kv * units / nth).
// An item reading c consecutive heads reads each token's K/V row as one contiguous run. A row's
// arithmetic does not depend on c.
// Example: 3 KV heads of 64 on one thread (a batched decode's sequence): c = 3; one sequence's
// decode on 2 threads: c = 1 (2 rounds of 1 beat 1 round of 3 on one thread).
constexpr int kItemWidth = 512;
inline int kv_heads_per_item(int n_head_kv, int hd, int units, int nth) {
  const int64_t base = (static_cast<int64_t>(n_head_kv) * units + nth - 1) / nth;
  for (int c = n_head_kv; c > 1; --c) {
    if (n_head_kv % c != 0 || static_cast<int64_t>(c) * hd > kItemWidth) continue;
    const int64_t items = static_cast<int64_t>(n_head_kv / c) * units;
    if ((items + nth - 1) / nth * c <= base) return c;
  }
  return 1;
}

}  // namespace akvq::kv::tile
