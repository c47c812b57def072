// AVX-512 tiles for Q4_K and Q6_K, chosen at run time (cpu/isa.h). Two families:
//
// 16-bit activation levels (ActQ16K rows, as the AVX2 tiles): each row's super-block is unpacked
// once into 256 int16 weights with the sub-block scales folded in (Q4_K: q * sc <= 15 * 63; Q6_K:
// |(q - 32) * sc| <= 32 * 128), and every token is multiplied with it by vpdpwssd (int16 x int16,
// two products summed per int32 lane): 8 instructions per super-block and token. Bounds: 16
// products per lane, Q4_K <= 16 * 945 * 32767 < 2^29, Q6_K <= 16 * 4096 * 32767 = 2147418112 <
// 2^31 - 1, so the super-block's integer sums S are exact.
//
// Q4_K with 8-bit levels (Q8K rows: ActQ8K super-blocks, ops/qblocks.h, whose bytes follow the
// file's nibble order): no unpack; the nibble registers of a row (and, shift) meet the token's
// bytes in vpdpbusd (u8 x s8, 4 products per int32 lane, <= 4 * 15 * 127 = 7620, so a lane is
// an exact int16), two such results are packed to words (vpackssdw, no saturation) and one
// vpdpwssd multiplies each word pair by its sub-block scale and sums: per super-block and token
// 4 vpdpbusd + 2 vpackssdw + 2 vpdpwssd; |S| <= 4 * 63 * 7620 per lane.
//
// Both: per (row, token, super-block) acc += f32(S) * (d_w * d_x) lane by lane, and for Q4_K the
// min term as one more FMA, acc += m_w * m_x, with m_w = -dmin * mn_j (lanes 8..15, a row's
// super-block) and m_x = d_x * sums_j (lanes 8..15, a token's super-block). The 16 lanes are
// summed once at the end. Every (row, token) pair is computed by the same sequence whatever the
// tile (batch-invariant: decode equals prefill bit for bit).
#include <cstdint>
#include <cstring>

#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "cpu/qgemm_kquant_avx512.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

using ops::ActQ16K;
using ops::ActQ8K;
using ops::BlockQ4_K;
using ops::BlockQ6_K;

struct WQ4_K {
  using Block = BlockQ4_K;
  static constexpr DType kType = DType::Q4_K;
  static constexpr bool kMin = true;  // a min term
};
struct WQ6_K {
  using Block = BlockQ6_K;
  static constexpr DType kType = DType::Q6_K;
  static constexpr bool kMin = false;
};

AKVQ_AVX512_BEGIN

// -dmin * mn_j in lanes 8 + j, 0 in lanes 0..7 (mn: the 8 min bytes).
inline __m512 q4k_min_lanes(uint64_t mn, uint16_t dmin) {
  const __m512i m = _mm512_cvtepu8_epi32(_mm_set_epi64x(static_cast<long long>(mn), 0));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(m), _mm512_set1_ps(-_cvtsh_ss(dmin)));
}

// ---- 16-bit levels: ActQ16K rows, int16 unpack ----

// One unpacked super-block of one row.
struct U16 {
  alignas(64) int16_t wq[256];  // [256] weights times their sub-block scale
  __m512 dw;                    // [16] d_w
  __m512 mn;                    // [16] Q4_K: -dmin * mn_j in lanes 8..15
};

AKVQ_ALWAYS_INLINE void unpack(const BlockQ4_K* b, U16& u) {
  uint64_t sc8, mn8;
  ops::q4k_scales_mins(b->scales, sc8, mn8);
  uint8_t sc[8];
  std::memcpy(sc, &sc8, 8);
  const __m512i m4 = _mm512_set1_epi16(15);
  for (int k = 0; k < 4; ++k) {
    // bytes 32k .. 32k + 31: low nibbles = values 64k + l, high nibbles = values 64k + 32 + l
    const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * k)));
    const __m512i s0 = _mm512_set1_epi16(static_cast<int16_t>(sc[2 * k]));
    const __m512i s1 = _mm512_set1_epi16(static_cast<int16_t>(sc[2 * k + 1]));
    __m512i* o = reinterpret_cast<__m512i*>(u.wq + 64 * k);
    _mm512_store_si512(o + 0, _mm512_mullo_epi16(_mm512_and_si512(v, m4), s0));
    _mm512_store_si512(o + 1, _mm512_mullo_epi16(_mm512_srli_epi16(v, 4), s1));
  }
  u.dw = _mm512_set1_ps(_cvtsh_ss(b->d));
  u.mn = q4k_min_lanes(mn8, b->dmin);
}

// Half h (values 128h .. 128h + 127): ql bytes A = ql[64h ..], B = ql[64h + 32 ..], qh bytes Q =
// qh[32h ..]; value 128h + 32k + l = nibble (k < 2: low, else high) of (k odd ? B : A)[l] | 2 bits
// of Q[l] at shift 2k, minus 32, times the int8 scale of its group of 16.
AKVQ_ALWAYS_INLINE void unpack(const BlockQ6_K* b, U16& u) {
  const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3), c32 = _mm512_set1_epi16(32);
  const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));  // [16]
  const __m512i sc16 = _mm512_castsi256_si512(sc);
  for (int h = 0; h < 2; ++h) {
    const __m512i AB = _mm512_loadu_si512(b->ql + 64 * h);  // [A | B]
    const __m256i Q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + 32 * h));
    const __m512i QQ = _mm512_inserti64x4(_mm512_castsi256_si512(Q), _mm256_srli_epi16(Q, 2), 1);  // [Q | Q >> 2]
    const __m512i q01 = _mm512_or_si512(_mm512_and_si512(AB, m4), _mm512_slli_epi16(_mm512_and_si512(QQ, m3), 4));
    const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(AB, 4), m4),
                                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(QQ, 4), m3), 4));
    const __m512i qk[2] = {q01, q23};  // bytes of values k = 0, 1 and k = 2, 3
    for (int k = 0; k < 4; ++k) {
      const __m256i bytes = k & 1 ? _mm512_extracti64x4_epi64(qk[k / 2], 1) : _mm512_castsi512_si256(qk[k / 2]);
      const int g = 8 * h + 2 * k;  // groups g (l < 16) and g + 1
      const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<int16_t>(g)),
                                             _mm256_set1_epi16(static_cast<int16_t>(g + 1)), 1);
      const __m512i v = _mm512_sub_epi16(_mm512_cvtepu8_epi16(bytes), c32);
      _mm512_store_si512(u.wq + 128 * h + 32 * k, _mm512_mullo_epi16(v, _mm512_permutexvar_epi16(idx, sc16)));
    }
  }
  u.dw = _mm512_set1_ps(_cvtsh_ss(b->d));
  u.mn = _mm512_setzero_ps();
}

// acc + one (row, token) super-block: the exact integer dot, scaled; then the min term (xm:
// the token's m_x lanes).
template <class K>
inline __m512 dot16(const U16& u, const ActQ16K* x, __m512 xm, __m512 acc) {
  __m512i s = _mm512_setzero_si512();
  for (int i = 0; i < 256; i += 32) {
    s = _mm512_dpwssd_epi32(s, _mm512_load_si512(u.wq + i), _mm512_load_si512(x->qs + i));
  }
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(u.dw, _mm512_set1_ps(x->d)), acc);
  if constexpr (K::kMin) acc = _mm512_fmadd_ps(u.mn, xm, acc);
  return acc;
}

// m_x of an ActQ16K super-block: d_x * sums_j in lanes 8 + j (the 64-byte header: d, pad[7],
// sums[8]), 0 in lanes 0..7.
inline __m512 min_lanes16(const ActQ16K* x) {
  return _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xff00, _mm512_load_si512(x)), _mm512_set1_ps(x->d));
}

// y[t * ldy + r] = row r . token t0 + t for r < R, t < T (rows w_stride bytes apart).
template <class K, int R, int T>
void tile16(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  using Block = typename K::Block;
  const int64_t nb = n_in / ops::kQKK;
  U16 u[R];
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const Block* blk = reinterpret_cast<const Block*>(w + r * w_stride) + b;
      prefetch_ahead<kAvx512PrefetchAhead>(blk, sizeof(*blk));
      unpack(blk, u[r]);
    }
    for (int t = 0; t < T; ++t) {
      const ActQ16K* xb = reinterpret_cast<const ActQ16K*>(x.data + (t0 + t) * x.stride) + b;
      const __m512 xm = K::kMin ? min_lanes16(xb) : _mm512_setzero_ps();
      for (int r = 0; r < R; ++r) acc[r][t] = dot16<K>(u[r], xb, xm, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

// ---- Q4_K with 8-bit levels: Q8K rows (ActQ8K super-blocks), byte dots on the nibbles ----

// One Q4_K super-block of one row, ready for the byte dots.
struct W8 {
  __m512i q[4];   // nibbles of chunk c (ActQ8K::qs): q[2m] = low, q[2m + 1] = high nibbles of qs[64m ..]
  __m512i sw[2];  // scale words of packs(a0, a1) and packs(a2, a3) (see dot8)
  __m512 dw;      // [16] d_w
  __m512 mn;      // [16] -dmin * mn_j in lanes 8..15
};

AKVQ_ALWAYS_INLINE void load_w8(const BlockQ4_K* b, W8& w) {
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int m = 0; m < 2; ++m) {
    const __m512i z = _mm512_loadu_si512(b->qs + 64 * m);
    w.q[2 * m] = _mm512_and_si512(z, m4);
    w.q[2 * m + 1] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
  }
  uint64_t sc8, mn8;
  ops::q4k_scales_mins(b->scales, sc8, mn8);
  const __m512i scw = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc8))));
  // packs(a, b) puts, in each 128-bit lane q, words 0..3 from a's int32 lanes 4q..4q+3 and
  // words 4..7 from b's: chunk 2m + h holds sub-block 4m + h in lanes 0..7 and 4m + 2 + h in
  // lanes 8..15, so lane q's words are sub-blocks (q < 2 ? 4m : 4m + 2) then (that + 1).
  const __m512i i0 = _mm512_set_epi16(3, 3, 3, 3, 2, 2, 2, 2, 3, 3, 3, 3, 2, 2, 2, 2,  //
                                      1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i i1 = _mm512_add_epi16(i0, _mm512_set1_epi16(4));
  w.sw[0] = _mm512_permutexvar_epi16(i0, scw);
  w.sw[1] = _mm512_permutexvar_epi16(i1, scw);
  w.dw = _mm512_set1_ps(_cvtsh_ss(b->d));
  w.mn = q4k_min_lanes(mn8, b->dmin);
}

inline __m512 dot8(const W8& w, const ActQ8K* x, __m512 acc) {
  const __m512i z = _mm512_setzero_si512();
  __m512i a[4];
  for (int c = 0; c < 4; ++c) a[c] = _mm512_dpbusd_epi32(z, w.q[c], _mm512_load_si512(x->qs + 64 * c));
  __m512i s = _mm512_dpwssd_epi32(z, _mm512_packs_epi32(a[0], a[1]), w.sw[0]);
  s = _mm512_dpwssd_epi32(s, _mm512_packs_epi32(a[2], a[3]), w.sw[1]);
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(w.dw, _mm512_set1_ps(x->d)), acc);
  // the header: d, pad[7] (0) in lanes 0..7, where w.mn is 0; m_x in lanes 8..15
  return _mm512_fmadd_ps(w.mn, _mm512_load_ps(reinterpret_cast<const float*>(x)), acc);
}

template <int R, int T>
void tile8(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  const int64_t nb = n_in / ops::kQKK;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    W8 wb[R];
    for (int r = 0; r < R; ++r) {
      const BlockQ4_K* blk = reinterpret_cast<const BlockQ4_K*>(w + r * w_stride) + b;
      prefetch_ahead<kAvx512PrefetchAhead>(blk, sizeof(*blk));
      load_w8(blk, wb[r]);
    }
    for (int t = 0; t < T; ++t) {
      const ActQ8K* xb = reinterpret_cast<const ActQ8K*>(x.data + (t0 + t) * x.stride) + b;
      for (int r = 0; r < R; ++r) acc[r][t] = dot8(wb[r], xb, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

template <class V, class K>
struct Tiles16 {
  // 4 x 12 measured best (tools_ops_bench, ffn_gate 2048 -> 5632, 64 tokens: Q4_K 1.2x, Q6_K 1.38x the
  // 2 x 5 tile: each row's unpack feeds 12 tokens)
  static constexpr TileShape kShape = {4, 12, 2, 4, 12};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    tile16<K, R, T>(w, w_stride, x, t0, n_in, y, ldy);
  }
};

template <class V, class K>
struct Tiles8 {
  static constexpr TileShape kShape = {4, 12, 2, 2, 12, ActFormat::Q8K};  // 2 x 12 measured best (1.15x 2 x 5)
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    tile8<R, T>(w, w_stride, x, t0, n_in, y, ldy);
  }
};

AKVQ_AVX512_END

struct Avx512 {};

}  // namespace

const TileKernels* simd_kernels_kquant_avx512(DType t) {
  return find_tiles<Tiles16, Avx512, WQ4_K, WQ6_K>(t);
}

const TileKernels* simd_kernels_kquant_avx512_act8(DType t) {
  return find_tiles<Tiles8, Avx512, WQ4_K>(t);
}

#else

const TileKernels* simd_kernels_kquant_avx512(DType) {
  return nullptr;
}

const TileKernels* simd_kernels_kquant_avx512_act8(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
