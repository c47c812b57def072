// AVX2 attention kernels over packed KV rows (layout in quant.h). Codes are expanded 8 at a time
// into int32 lanes with one variable shift (vpsrlvd) of a broadcast word and a mask, then mapped
// to levels: uniform -> int->float convert, Gaussian -> a lane permute of the level table (two
// permutes and a blend for 16 levels; at 2 bits an in-lane vpermilps, which reads only bits [1:0]
// of each lane, so the shifted word needs no mask).
// Scores keep one FMA chain per row and query and reduce 4 rows at a time with horizontal adds
// (2-bit rows of one group, the default: 8 rows, their headers read by one gather). Accumulate
// keeps a tile of output channels in registers while it walks the rows (p·scale and the offset
// sums computed once per block of rows) and adds the per-group offset sums at the end. Both take
// up to kMaxQueries queries / weight vectors at once (the heads of a GQA group, the positions of a
// chunk), so each chunk of codes is expanded once for all of them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <tuple>

#include "cpu/simd.h"
#include "kv/quant.h"
#include "kv/quant_headers_avx2.h"

namespace akvq::kv::simd {

#ifdef AKVQ_AVX2

namespace {

constexpr int kMaxGroups = 64;
constexpr int kMaxScaledN = kMaxRow;  // longest row served by the 2-bit uniform scores kernel
constexpr int64_t kRowBlock = 64;     // rows per block when a row spans several column tiles

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 8 codes of B bits from p[B bytes] into int32 lanes.
template <int B>
inline __m256i unpack8(const uint8_t* p);

template <>
inline __m256i unpack8<2>(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  const __m256i v = _mm256_set1_epi32(w);
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), _mm256_set1_epi32(3));
}
template <>
inline __m256i unpack8<3>(const uint8_t* p) {
  const uint32_t w = p[0] | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21)), _mm256_set1_epi32(7));
}
template <>
inline __m256i unpack8<4>(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)), _mm256_set1_epi32(15));
}
template <>
inline __m256i unpack8<8>(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// 16 codes of 2 bits from p[4 bytes]: values 0..7 in a, 8..15 in b (kMask false: each code in
// bits [1:0] of its lane with the later codes above it, for a consumer that reads only those bits).
template <bool kMask = true>
inline void unpack16_2(const uint8_t* p, __m256i& a, __m256i& b) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  a = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
  b = _mm256_srlv_epi32(v, _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30));
  if constexpr (kMask) {
    a = _mm256_and_si256(a, _mm256_set1_epi32(3));
    b = _mm256_and_si256(b, _mm256_set1_epi32(3));
  }
}
// 8 codes of 2 bits from p[2 bytes], unmasked as above.
inline __m256i unpack8_2_unmasked(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  return _mm256_srlv_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
}
// Codes for level<B, kGauss>: the 2-bit Gaussian permute needs no mask.
template <int B, bool kGauss>
inline __m256i codes8(const uint8_t* p) {
  if constexpr (B == 2 && kGauss) {
    return unpack8_2_unmasked(p);
  } else {
    return unpack8<B>(p);
  }
}

// 2-bit uniform codes without per-lane shifts: broadcast the code word and keep lane i's bits
// with a mask, so lane i of a low chunk holds c·4^i and of a high chunk c·2^(15+2i) (exact in
// float). The kernels fold the inverse powers of two into q (scores) or into the accumulator
// (accumulate), which is exact: the results equal the unscaled arithmetic bit for bit.
inline __m256i mask_lo2() {
  return _mm256_setr_epi32(3, 3 << 2, 3 << 4, 3 << 6, 3 << 8, 3 << 10, 3 << 12, 3 << 14);
}
inline __m256i mask_hi2() {
  return _mm256_setr_epi32(3 << 15, 3 << 17, 3 << 19, 3 << 21, 3 << 23, 3 << 25, 3 << 27, 3 << 29);
}
inline __m256 scale_lo2() {
  return _mm256_setr_ps(1.0f, 0x1p-2f, 0x1p-4f, 0x1p-6f, 0x1p-8f, 0x1p-10f, 0x1p-12f, 0x1p-14f);
}
inline __m256 scale_hi2() {
  return _mm256_setr_ps(0x1p-15f, 0x1p-17f, 0x1p-19f, 0x1p-21f, 0x1p-23f, 0x1p-25f, 0x1p-27f, 0x1p-29f);
}
// 16 codes from p[4 bytes] (lo: values 0..7 scaled by 4^i, hi: values 8..15 by 2^(15+2i)).
inline void masked16_2(const uint8_t* p, __m256& lo, __m256& hi) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, mask_lo2()));
  hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 1), mask_hi2()));
}
// 8 codes from p[2 bytes], lane i scaled by 4^i.
inline __m256 masked8_2(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_set1_epi32(w), mask_lo2()));
}

struct Lut {
  __m256 lo, hi;  // levels 0..7 and 8..15 (Gaussian only)
};

template <int B, bool kGauss>
Lut make_lut(const float* levels) {
  Lut L{_mm256_setzero_ps(), _mm256_setzero_ps()};
  if (kGauss) {
    float t[16] = {};
    for (int i = 0; i < (1 << B) && i < 16; ++i) t[i] = levels[i];
    if (B == 2) std::copy(t, t + 4, t + 4);  // vpermilps: the 4 levels in each 128-bit half
    L.lo = _mm256_loadu_ps(t);
    L.hi = _mm256_loadu_ps(t + 8);
  }
  return L;
}

template <int B, bool kGauss>
inline __m256 level(__m256i c, const Lut& L) {
  if constexpr (!kGauss) {
    return _mm256_cvtepi32_ps(c);
  } else if constexpr (B == 2) {
    return _mm256_permutevar_ps(L.lo, c);  // bits [1:0] of each lane
  } else if constexpr (B == 3) {
    return _mm256_permutevar8x32_ps(L.lo, c);
  } else {
    const __m256 lo = _mm256_permutevar8x32_ps(L.lo, c);
    const __m256 hi = _mm256_permutevar8x32_ps(L.hi, c);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
  }
}

// ---------------------------------------------------------------- scores

// Scores of R consecutive rows against NQ queries, interleaved chunk by chunk: each chunk of codes
// is expanded once and feeds R·NQ independent FMA chains. For query j (at q + j·qst, group sums at
// qsum + j·qsst): out[u·NQ + j] = Σ_g scale_g · (q_j,g · L[codes_g]) and off[u·NQ + j] = Σ_g
// offset_g · qsum_j,g.
// kOne: the rows hold one group (ng == 1), so the per-group partial sums take no registers.
template <int B, bool kGauss, int CPG, int R, int NQ, bool kScaled, bool kOne = false>
inline void rows_dot(const uint8_t* row0, size_t stride, int ng_rt, int cpg_rt, const float* q, size_t qst,
                     const float* qsum, size_t qsst, const Lut& L, __m256* r, float* off) {
  const int cpg = CPG ? CPG : cpg_rt;
  const int ng = kOne ? 1 : ng_rt;
  const size_t code0 = 4 * static_cast<size_t>(ng);
#pragma GCC unroll 16
  for (int u = 0; u < R * NQ; ++u) r[u] = _mm256_setzero_ps(), off[u] = 0.0f;
  for (int g = 0; g < ng; ++g) {
    __m256 a[R * NQ];
#pragma GCC unroll 16
    for (int u = 0; u < R * NQ; ++u) a[u] = _mm256_setzero_ps();
    const size_t cg = code0 + static_cast<size_t>(g) * cpg * B;
    const float* qg = q + g * cpg * 8;
    int k = 0;
    if constexpr (B == 2) {
#pragma GCC unroll 8
      for (; k + 2 <= cpg; k += 2) {
        __m256 q0[NQ], q1[NQ];
#pragma GCC unroll 4
        for (int j = 0; j < NQ; ++j) {
          q0[j] = _mm256_loadu_ps(qg + j * qst + 8 * k);
          q1[j] = _mm256_loadu_ps(qg + j * qst + 8 * k + 8);
        }
#pragma GCC unroll 4
        for (int u = 0; u < R; ++u) {
          __m256 f0, f1;
          if constexpr (kScaled) {
            masked16_2(row0 + u * stride + cg + k * B, f0, f1);
          } else {
            __m256i c0, c1;
            unpack16_2<!kGauss>(row0 + u * stride + cg + k * B, c0, c1);
            f0 = level<B, kGauss>(c0, L);
            f1 = level<B, kGauss>(c1, L);
          }
#pragma GCC unroll 4
          for (int j = 0; j < NQ; ++j) {
            a[u * NQ + j] = _mm256_fmadd_ps(f0, q0[j], a[u * NQ + j]);
            a[u * NQ + j] = _mm256_fmadd_ps(f1, q1[j], a[u * NQ + j]);
          }
        }
      }
    }
#pragma GCC unroll 16
    for (; k < cpg; ++k) {
      __m256 q0[NQ];
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) q0[j] = _mm256_loadu_ps(qg + j * qst + 8 * k);
#pragma GCC unroll 4
      for (int u = 0; u < R; ++u) {
        __m256 f;
        if constexpr (kScaled) {
          f = masked8_2(row0 + u * stride + cg + k * B);
        } else {
          f = level<B, kGauss>(codes8<B, kGauss>(row0 + u * stride + cg + k * B), L);
        }
#pragma GCC unroll 4
        for (int j = 0; j < NQ; ++j) a[u * NQ + j] = _mm256_fmadd_ps(f, q0[j], a[u * NQ + j]);
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < R; ++u) {
      const uint8_t* h = row0 + u * stride + 4 * g;
      const __m256 sc = _mm256_set1_ps(half_at(h));
      const float of = half_at(h + 2);
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) {
        r[u * NQ + j] = _mm256_fmadd_ps(a[u * NQ + j], sc, r[u * NQ + j]);
        off[u * NQ + j] = std::fma(of, qsum[j * qsst + g], off[u * NQ + j]);  // explicit: same in every instantiation
      }
    }
  }
}

// Rows per pass for NQ queries: R·NQ accumulators plus R·NQ partial sums fit the 16 registers.
template <int NQ>
constexpr int rows_per_pass() {
  return NQ == 1 ? 4 : NQ == 2 ? 2 : 1;
}

// ---- 2-bit rows of one group (the default for head_dim <= 128): the same products, sums and
// rounding as rows_dot + cpu::hsum, so the same scores bit for bit, with more independent work.

// v[u·NQ + j] = sc[u] · (q_j · L[codes of row u]) for the R rows at row0 + u·stride: two chunks at
// a time, each row's 16 codes decoded from one broadcast feed all NQ queries, whose chunks are read
// by the FMAs from memory (registers: R·NQ accumulators, 2 decoded chunks, the decoder's 2-3
// constants). R·NQ independent chains hide the FMA latency that one row's chain of CPG would expose.
template <bool kGauss, int CPG, int R, int NQ>
inline void dot_2one(const uint8_t* row0, size_t stride, const float* q, size_t qst, const Lut& L, const float* sc,
                     __m256* v) {
  static_assert(CPG % 2 == 0);
  __m256 a[R * NQ];
#pragma GCC unroll 16
  for (int u = 0; u < R * NQ; ++u) a[u] = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int k = 0; k < CPG; k += 2) {
#pragma GCC unroll 8
    for (int u = 0; u < R; ++u) {
      __m256 f0, f1;
      if constexpr (kGauss) {
        __m256i c0, c1;
        unpack16_2<false>(row0 + u * stride + 4 + 2 * k, c0, c1);
        f0 = level<2, true>(c0, L);
        f1 = level<2, true>(c1, L);
      } else {
        masked16_2(row0 + u * stride + 4 + 2 * k, f0, f1);
      }
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) {
        a[u * NQ + j] = _mm256_fmadd_ps(f0, _mm256_load_ps(q + j * qst + 8 * k), a[u * NQ + j]);
        a[u * NQ + j] = _mm256_fmadd_ps(f1, _mm256_load_ps(q + j * qst + 8 * k + 8), a[u * NQ + j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int u = 0; u < R; ++u) {
    const __m256 s = _mm256_broadcast_ss(sc + u);
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) v[u * NQ + j] = _mm256_mul_ps(a[u * NQ + j], s);  // = fma(a, s, +0)
  }
}

// Lane u = cpu::hsum(x[u·step]) for u < 8, in hsum's order: ((x0+x4) + (x2+x6)) + ((x1+x5) + (x3+x7)).
inline __m256 hsum8(const __m256* x, int step) {
  __m256 w[4];  // w[u] = [lo + hi of row u | lo + hi of row u + 4]
  for (int u = 0; u < 4; ++u) {
    const __m256 a = x[u * step], b = x[(u + 4) * step];
    w[u] = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
  }
  const __m256 t0 = _mm256_unpacklo_ps(w[0], w[1]), t1 = _mm256_unpackhi_ps(w[0], w[1]);
  const __m256 t2 = _mm256_unpacklo_ps(w[2], w[3]), t3 = _mm256_unpackhi_ps(w[2], w[3]);
  const __m256 c0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 c1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 c2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 c3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  return _mm256_add_ps(_mm256_add_ps(c0, c2), _mm256_add_ps(c1, c3));
}

// Rows per pass of dot_2one for NQ queries (divides 8).
template <int NQ>
constexpr int rows_2one() {
  return NQ == 1 ? 8 : NQ == 2 ? 4 : 2;
}

// scores of 2-bit rows of one group (q: the kernel's copy, kScaled already folded in).
template <bool kGauss, int CPG, int NQ>
void scores_2one(const float* q, size_t qst, const float* qsum, size_t qsst, const Lut& L, const uint8_t* rows,
                 size_t stride, int64_t n_rows, float* out, size_t ost) {
  constexpr int R = rows_2one<NQ>();
  int64_t t = 0;
  for (; t + 8 <= n_rows; t += 8) {
    const uint8_t* r0 = rows + t * stride;
    __m256 sc8, of8;
    headers8(r0, stride, sc8, of8);
    alignas(32) float sc[8];
    _mm256_store_ps(sc, sc8);
    __m256 v[8 * NQ];  // [row u][query j]
    for (int u0 = 0; u0 < 8; u0 += R) {
      dot_2one<kGauss, CPG, R, NQ>(r0 + u0 * stride, stride, q, qst, L, sc + u0, v + u0 * NQ);
    }
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) {
      const __m256 off = _mm256_fmadd_ps(of8, _mm256_set1_ps(qsum[j * qsst]), _mm256_setzero_ps());
      _mm256_storeu_ps(out + j * ost + t, _mm256_add_ps(hsum8(v + j, NQ), off));
    }
  }
  for (; t < n_rows; ++t) {
    const uint8_t* r = rows + t * stride;
    const float sc = half_at(r), of = half_at(r + 2);
    __m256 v[NQ];
    dot_2one<kGauss, CPG, 1, NQ>(r, stride, q, qst, L, &sc, v);
    for (int j = 0; j < NQ; ++j) out[j * ost + t] = cpu::hsum(v[j]) + std::fma(of, qsum[j * qsst], 0.0f);
  }
}

// Rows per pass for rows of one group: R·NQ independent FMA chains (>= 8 keep both FMA pipes busy
// through the 4-cycle latency) with no per-group partial sums.
template <int NQ>
constexpr int one_group_rows() {
  return NQ == 1 ? 8 : NQ == 2 ? 4 : NQ == 3 ? 4 : 2;
}

// out[j·ost + t] = score of row t for query j, t < n_rows: passes of R rows, horizontal sums 4 rows
// at a time in cpu::hsum's order (a row's score must not depend on how many rows or queries share
// the pass), the rows left over one at a time.
template <int B, bool kGauss, int CPG, int NQ, bool kScaled, bool kOne, int R>
void score_rows(int ng, int cpg, const float* q, size_t qst, const float* qsum, size_t qsst, const Lut& L,
                const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  constexpr int S = std::lcm(R, 4);  // rows per step
  int64_t t = 0;
  for (; t + S <= n_rows; t += S) {
    alignas(16) float off[S * NQ];
    __m256 v[S * NQ];  // [row u][query j]
    for (int u0 = 0; u0 < S; u0 += R) {
      rows_dot<B, kGauss, CPG, R, NQ, kScaled, kOne>(rows + (t + u0) * stride, stride, ng, cpg, q, qst, qsum, qsst, L,
                                                     v + u0 * NQ, off + u0 * NQ);
    }
    for (int u4 = 0; u4 < S; u4 += 4) {
      for (int j = 0; j < NQ; ++j) {
        __m128 h[4];
        for (int u = 0; u < 4; ++u) {
          const __m256 x = v[(u4 + u) * NQ + j];
          h[u] = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        }
        _MM_TRANSPOSE4_PS(h[0], h[1], h[2], h[3]);
        const __m128 s = _mm_add_ps(_mm_add_ps(h[0], h[2]), _mm_add_ps(h[1], h[3]));
        const float* o = off + u4 * NQ + j;
        _mm_storeu_ps(out + j * ost + t + u4, _mm_add_ps(s, _mm_setr_ps(o[0], o[NQ], o[2 * NQ], o[3 * NQ])));
      }
    }
  }
  for (; t < n_rows; ++t) {
    float off[NQ];
    __m256 v[NQ];
    rows_dot<B, kGauss, CPG, 1, NQ, kScaled, kOne>(rows + t * stride, stride, ng, cpg, q, qst, qsum, qsst, L, v, off);
    for (int j = 0; j < NQ; ++j) out[j * ost + t] = cpu::hsum(v[j]) + off[j];
  }
}

template <int B, bool kGauss, int CPG, int NQ>
void scores_k(int group, const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
              const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  const int ng = n / group, cpg = group / 8;
  const Lut L = make_lut<B, kGauss>(levels);
  constexpr bool kScaled = B == 2 && !kGauss;
  // The queries are copied at a compile-time stride (n <= kMaxRow: RowCodec serves longer rows
  // with the references): their addresses then fold into the loads instead of taking registers
  // that the loops spilled.
  alignas(32) float qs[NQ * kMaxScaledN];
  if constexpr (!kScaled) {
    for (int j = 0; j < NQ; ++j) std::memcpy(qs + j * kMaxScaledN, q + j * qst, sizeof(float) * n);
  } else {  // q with the inverse lane scales of masked16_2 / masked8_2 folded in
    for (int j = 0; j < NQ; ++j) {
      const float* qj = q + j * qst;
      float* d = qs + j * kMaxScaledN;
      for (int g = 0; g < ng; ++g) {
        int k = 0;
        for (; k + 2 <= cpg; k += 2) {
          const int i = g * group + 8 * k;
          _mm256_store_ps(d + i, _mm256_mul_ps(_mm256_loadu_ps(qj + i), scale_lo2()));
          _mm256_store_ps(d + i + 8, _mm256_mul_ps(_mm256_loadu_ps(qj + i + 8), scale_hi2()));
        }
        if (k < cpg) {
          const int i = g * group + 8 * k;
          _mm256_store_ps(d + i, _mm256_mul_ps(_mm256_loadu_ps(qj + i), scale_lo2()));
        }
      }
    }
  }
  q = qs;
  qst = kMaxScaledN;
  if constexpr (B == 2 && (CPG == 4 || CPG == 8 || CPG == 16)) {
    if (ng == 1) return scores_2one<kGauss, CPG, NQ>(q, qst, qsum, qsst, L, rows, stride, n_rows, out, ost);
  }
  if (ng == 1) {
    score_rows<B, kGauss, CPG, NQ, kScaled, true, one_group_rows<NQ>()>(ng, cpg, q, qst, qsum, qsst, L, rows, stride,
                                                                        n_rows, out, ost);
  } else {
    score_rows<B, kGauss, CPG, NQ, kScaled, false, rows_per_pass<NQ>()>(ng, cpg, q, qst, qsum, qsst, L, rows, stride,
                                                                         n_rows, out, ost);
  }
}

template <int B, bool kGauss, int NQ>
void scores_cpg(int group, const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
                const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  switch (group / 8) {
    case 4: return scores_k<B, kGauss, 4, NQ>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 8: return scores_k<B, kGauss, 8, NQ>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 16: return scores_k<B, kGauss, 16, NQ>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    default: return scores_k<B, kGauss, 0, NQ>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
  }
}

template <int B, bool kGauss>
void scores_nq(int nq, int group, const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst,
               int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  switch (nq) {
    case 1: return scores_cpg<B, kGauss, 1>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 2: return scores_cpg<B, kGauss, 2>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 3: return scores_cpg<B, kGauss, 3>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    default: return scores_cpg<B, kGauss, 4>(group, levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
  }
}

// ---------------------------------------------------------------- accumulate

// For NQ weight vectors (p + j·pst) and accumulators (acc + j·ast):
// acc_j[8·NCH] (channels chunk0·8 ...) += Σ_t p_j[t] · scale_{t,g} · L[codes], rows [t0, t1).
// pw[j·kRowBlock + t − t0] = p_j[t] · scale_{t,g}, computed once for all tiles of the group.
template <int B, bool kGauss, int NCH, int NQ>
void acc_tile(const float* pw, const uint8_t* rows, size_t stride, int64_t t0, int64_t t1, int ng, int chunk0,
              const Lut& L, float* acc, size_t ast) {
  constexpr bool kScaled = B == 2 && !kGauss;
  // lane scales of masked16_2 / masked8_2 per register: pairs (lo, hi), an odd last one lo
  auto lane_scale = [](int c) { return (c % 2 == 1) ? scale_hi2() : scale_lo2(); };
  __m256 a[NQ * NCH];
#pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) {
      a[j * NCH + c] = _mm256_loadu_ps(acc + j * ast + 8 * c);
      if constexpr (kScaled) a[j * NCH + c] = _mm256_div_ps(a[j * NCH + c], lane_scale(c));
    }
  }
  const size_t code_off = 4 * static_cast<size_t>(ng) + static_cast<size_t>(chunk0) * B;
  for (int64_t t = t0; t < t1; ++t) {
    __m256 w[NQ];
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) w[j] = _mm256_broadcast_ss(pw + j * kRowBlock + (t - t0));
    const uint8_t* codes = rows + t * stride + code_off;
    int c = 0;
    if constexpr (B == 2) {
#pragma GCC unroll 4
      for (; c + 2 <= NCH; c += 2) {
        __m256 f0, f1;
        if constexpr (kScaled) {
          masked16_2(codes + c * B, f0, f1);
        } else {
          __m256i c0, c1;
          unpack16_2<!kGauss>(codes + c * B, c0, c1);
          f0 = level<B, kGauss>(c0, L);
          f1 = level<B, kGauss>(c1, L);
        }
#pragma GCC unroll 4
        for (int j = 0; j < NQ; ++j) {
          a[j * NCH + c] = _mm256_fmadd_ps(f0, w[j], a[j * NCH + c]);
          a[j * NCH + c + 1] = _mm256_fmadd_ps(f1, w[j], a[j * NCH + c + 1]);
        }
      }
    }
#pragma GCC unroll 8
    for (; c < NCH; ++c) {
      __m256 f;
      if constexpr (kScaled) {
        f = masked8_2(codes + c * B);
      } else {
        f = level<B, kGauss>(codes8<B, kGauss>(codes + c * B), L);
      }
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) a[j * NCH + c] = _mm256_fmadd_ps(f, w[j], a[j * NCH + c]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) {
      if constexpr (kScaled) a[j * NCH + c] = _mm256_mul_ps(a[j * NCH + c], lane_scale(c));
      _mm256_storeu_ps(acc + j * ast + 8 * c, a[j * NCH + c]);
    }
  }
}

// Widest channel tile for NQ accumulators: NQ·NCH accumulators, NQ weights, the decoded codes and
// the decoder's constants must fit the 16 registers (an accumulator spilled to the stack puts a
// store-to-load round trip into its chain). 8-bit codes need no constants.
template <int B, int NQ>
constexpr int max_tile() {
  return NQ == 1 ? 8 : NQ == 2 ? 4 : (B == 8 && NQ == 3) ? 4 : 2;
}

template <int B, bool kGauss, int NQ>
void acc_tile_n(int nch, const float* pw, const uint8_t* rows, size_t stride, int64_t t0, int64_t t1, int ng,
                int chunk0, const Lut& L, float* acc, size_t ast) {
  if constexpr (max_tile<B, NQ>() >= 8) {
    switch (nch) {
      case 8: return acc_tile<B, kGauss, 8, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
      case 7: return acc_tile<B, kGauss, 7, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
      case 6: return acc_tile<B, kGauss, 6, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
      case 5: return acc_tile<B, kGauss, 5, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
      default: break;
    }
  }
  if constexpr (max_tile<B, NQ>() >= 4) {
    switch (nch) {
      case 4: return acc_tile<B, kGauss, 4, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
      case 3: return acc_tile<B, kGauss, 3, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
      default: break;
    }
  }
  switch (nch) {
    case 2: return acc_tile<B, kGauss, 2, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
    default: return acc_tile<B, kGauss, 1, NQ>(pw, rows, stride, t0, t1, ng, chunk0, L, acc, ast);
  }
}

template <int B, bool kGauss, int NQ>
void accumulate_k(int group, const float* levels, const float* p, size_t pst, const uint8_t* rows, size_t stride,
                  int64_t n_rows, int n, float* acc, size_t ast, const RowsAhead* ahead) {
  const int ng = n / group, cpg = group / 8;
  int nch = max_tile<B, NQ>();
  while (cpg % nch != 0) --nch;  // largest divisor of cpg that fits: tiles stay in one group
  const Lut L = make_lut<B, kGauss>(levels);
  float osum[NQ][kMaxGroups] = {};
  alignas(32) float pw[NQ * kRowBlock];
  for (int64_t t0 = 0; t0 < n_rows; t0 += kRowBlock) {
    const int64_t t1 = std::min(n_rows, t0 + kRowBlock);
    for (int g = 0; g < ng; ++g) {
      float os[NQ];
      for (int j = 0; j < NQ; ++j) os[j] = osum[j][g];
      for (int64_t c0 = t0; c0 < t1; c0 += 16) {  // the requests spread per 16 rows
        const int64_t c1 = std::min(t1, c0 + 16);
        if (g == 0) request_ahead(ahead, c0, c1, n_rows);
        for (int64_t t = c0; t < c1; ++t) {
          const uint8_t* h = rows + t * stride + 4 * g;
          const float sc = half_at(h), o = half_at(h + 2);
#pragma GCC unroll 4
          for (int j = 0; j < NQ; ++j) {
            const float pj = p[j * pst + t];
            pw[j * kRowBlock + (t - t0)] = pj * sc;
            os[j] = std::fma(pj, o, os[j]);
          }
        }
      }
      for (int j = 0; j < NQ; ++j) osum[j][g] = os[j];
      for (int k = 0; k < cpg; k += nch) {
        acc_tile_n<B, kGauss, NQ>(nch, pw, rows, stride, t0, t1, ng, g * cpg + k, L, acc + (g * cpg + k) * 8, ast);
      }
    }
  }
  for (int j = 0; j < NQ; ++j) {
    float* aj = acc + j * ast;
    for (int g = 0; g < ng; ++g) {
      const __m256 o = _mm256_set1_ps(osum[j][g]);
      for (int i = g * group; i < (g + 1) * group; i += 8) {
        _mm256_storeu_ps(aj + i, _mm256_add_ps(_mm256_loadu_ps(aj + i), o));
      }
    }
  }
}

template <int B, bool kGauss>
void accumulate_nq(int nq, int group, const float* levels, const float* p, size_t pst, const uint8_t* rows,
                   size_t stride, int64_t n_rows, int n, float* acc, size_t ast, const RowsAhead* ahead) {
  switch (nq) {
    case 1: return accumulate_k<B, kGauss, 1>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
    case 2: return accumulate_k<B, kGauss, 2>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
    case 3: return accumulate_k<B, kGauss, 3>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
    default: return accumulate_k<B, kGauss, 4>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
  }
}

}  // namespace

bool available(const QuantSpec& spec, int group) {
  if (group <= 0 || group % 8 != 0) return false;
  if (spec.bits == 8 && spec.levels != Levels::Uniform) return false;
  return spec.bits == 2 || spec.bits == 3 || spec.bits == 4 || spec.bits == 8;
}

void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out) {
  scores_multi(spec, group, levels, q, 0, qsum, 0, 1, n, rows, stride, n_rows, out, 0);
}

void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc) {
  accumulate_multi(spec, group, levels, p, 0, 1, rows, stride, n_rows, n, acc, 0);
}

void scores_multi(const QuantSpec& spec, int group, const float* levels, const float* q, size_t q_stride,
                  const float* qsum, size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride,
                  int64_t n_rows, float* out, size_t out_stride) {
  const bool gs = spec.levels == Levels::Gaussian;
  const auto args =
      std::make_tuple(nq, group, levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride);
  switch (spec.bits) {
    case 2: return gs ? std::apply(scores_nq<2, true>, args) : std::apply(scores_nq<2, false>, args);
    case 3: return gs ? std::apply(scores_nq<3, true>, args) : std::apply(scores_nq<3, false>, args);
    case 4: return gs ? std::apply(scores_nq<4, true>, args) : std::apply(scores_nq<4, false>, args);
    default: return std::apply(scores_nq<8, false>, args);
  }
}

void accumulate_multi(const QuantSpec& spec, int group, const float* levels, const float* p, size_t p_stride, int nq,
                      const uint8_t* rows, size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                      const RowsAhead* ahead) {
  if (n / group > kMaxGroups) {
    request_ahead(ahead, 0, n_rows, n_rows);
    for (int j = 0; j < nq; ++j) {
      ref::accumulate(spec, group, levels, p + j * p_stride, rows, stride, n_rows, n, acc + j * acc_stride);
    }
    return;
  }
  const bool gs = spec.levels == Levels::Gaussian;
  const auto args = std::make_tuple(nq, group, levels, p, p_stride, rows, stride, n_rows, n, acc, acc_stride, ahead);
  switch (spec.bits) {
    case 2: return gs ? std::apply(accumulate_nq<2, true>, args) : std::apply(accumulate_nq<2, false>, args);
    case 3: return gs ? std::apply(accumulate_nq<3, true>, args) : std::apply(accumulate_nq<3, false>, args);
    case 4: return gs ? std::apply(accumulate_nq<4, true>, args) : std::apply(accumulate_nq<4, false>, args);
    default: return std::apply(accumulate_nq<8, false>, args);
  }
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (quant_neon.cpp): the scalar references serve all

bool available(const QuantSpec&, int) {
  return false;
}
void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out) {
  ref::scores(spec, group, levels, q, qsum, n, rows, stride, n_rows, out);
}
void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc) {
  ref::accumulate(spec, group, levels, p, rows, stride, n_rows, n, acc);
}
void scores_multi(const QuantSpec& spec, int group, const float* levels, const float* q, size_t q_stride,
                  const float* qsum, size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride,
                  int64_t n_rows, float* out, size_t out_stride) {
  for (int j = 0; j < nq; ++j) {
    ref::scores(spec, group, levels, q + j * q_stride, qsum + j * qsum_stride, n, rows, stride, n_rows,
                out + j * out_stride);
  }
}
void accumulate_multi(const QuantSpec& spec, int group, const float* levels, const float* p, size_t p_stride, int nq,
                      const uint8_t* rows, size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                      const RowsAhead* ahead) {
  request_ahead(ahead, 0, n_rows, n_rows);
  for (int j = 0; j < nq; ++j) {
    ref::accumulate(spec, group, levels, p + j * p_stride, rows, stride, n_rows, n, acc + j * acc_stride);
  }
}

#endif

}  // namespace akvq::kv::simd
