// AVX-512 VNNI tiles for Q4_K and Q6_K weights in the R16B layout (cpu/qgemm.h: 16 rows
// interleaved in 4-byte pieces, their scales re-split) against Q16XK rows (ops/qblocks.h:
// ActQ16XK super-blocks; 16-bit levels split into bytes h, l, or 8-bit levels h = q), chosen at
// run time (cpu/isa.h). Lanes are rows, as in the Q4_0 / Q4_1 / Q8_0 R16B tiles
// (qgemm_q32_r16b_avx512.cpp): one 64-byte operand holds 4 consecutive weight values of each of
// the 16 rows as bytes, and one byte dot (vpdpbusd) against the token's 4 matching bytes broadcast
// adds each row's 4 products to its own int32 lane. The file-layout tiles (qgemm_kquant_avx512.cpp)
// unpack every row's super-block to int16 weights times their scale and run vpdpwssd per row and
// token; here one byte dot serves 16 rows and nothing is stored.
//
// Operands: Q4_K chunk c holds qs bytes 4c .. 4c + 3 of each row; its low nibbles are values
// 4i .. 4i + 3 of sub-block 2k, its high nibbles those of sub-block 2k + 1 (k = c / 8, i = c % 8).
// Q6_K's 6-bit values q6 (0..63) are put together from a 4-byte piece of ql (low 4 bits) and one of
// qh (high 2 bits), as in ops/qblocks.h.
//
// Per (row, token, super-block), in this order whatever the tile:
//   for each sub-block j (Q4_K: 8 of 32 values; Q6_K: 16 of 16):
//     S_j = sum of weight * q over the sub-block, exact in int32: with 16-bit levels (h pass) << 8
//       + (l pass), else one pass; Q6_K: + off16_j = -32 * sum q (its offset, from the Q16XK row);
//       |S_j| <= 32 * 15 * 32767 (Q4_K), 16 * 32 * 32767 (Q6_K) < 2^24, so f32(S_j) is exact;
//     sb = fma(f32(S_j), d_w * sc_j, sb); Q4_K: sb = fma(-dmin_w * mn_j, sums_j, sb)
//   acc = fma(sb, d_x, acc)
// which is the K-quant dot of the scalar reference (ops/ref_quant.cpp) with the f32 roundings in
// another order, so the two layouts agree to f32 rounding, and a (row, token) result is bit for
// bit the same whatever tile or batch computes it (decode equals prefill, a batched step equals
// single streams). How the integer sums are split into chains does not change them.
#include <cstddef>
#include <cstdint>

#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "cpu/qgemm_r16b_avx512.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

using ops::ActQ16XK;
using ops::BlockQ4_K;
using ops::BlockQ6_K;

AKVQ_AVX512_BEGIN

// 16 bytes at p widened to 16 f32 lanes (U: unsigned bytes, else signed).
template <bool U>
inline __m512 bytes_ps(const void* p) {
  const __m128i b = _mm_loadu_si128(static_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(U ? _mm512_cvtepu8_epi32(b) : _mm512_cvtepi8_epi32(b));
}

// s[t] = the exact integer sum of the N operands op[i] (4 values 0..63 per row lane) against token
// t's bytes of values off + 4i .. (r16b::dot_bytes; the l bytes follow the h bytes by 256).
template <bool L, int T, int N>
AKVQ_ALWAYS_INLINE void dot_bytes(const __m512i* op, const ActQ16XK* const* x, int off, __m512i* s) {
  static_assert(offsetof(ActQ16XK, l) - offsetof(ActQ16XK, h) == 256, "Q16XK layout");
  const uint8_t* xb[T];
  for (int t = 0; t < T; ++t) xb[t] = reinterpret_cast<const uint8_t*>(x[t]->h) + off;
  r16b::dot_bytes<L, false, T, N>(op, _mm512_setzero_si512(), xb, [](int i) { return 4 * i; }, 256, s);
}

// ---- Q4_K: d[16], dmin[16], A, B, H (the 6-bit scales and mins), 32 chunks of nibbles ----

struct RQ4_K {
  static constexpr DType kType = DType::Q4_K;
  static constexpr int64_t kGroupBytes = 16 * sizeof(BlockQ4_K);  // one super-block of the 16 rows
  static constexpr int kOffDmin = 32, kOffA = 64, kOffB = 128, kOffH = 192, kOffQs = 256;

  // The scales and mins of the group's super-block as [8 j][16 r] bytes (the A, B, H split undone).
  static AKVQ_ALWAYS_INLINE void unpack_scales(const uint8_t* g, uint8_t* sc, uint8_t* mn) {
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
    const __m512i A = _mm512_loadu_si512(g + kOffA);
    const __m512i B = _mm512_loadu_si512(g + kOffB);
    const __m512i H = _mm512_loadu_si512(g + kOffH);
    const auto high = [&](int shift) {  // 2 bits of H at `shift`, moved to bits 4-5 of each byte
      return _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(H, shift), m3), 4);
    };
    _mm512_store_si512(sc, _mm512_or_si512(_mm512_and_si512(A, m4), high(0)));
    _mm512_store_si512(sc + 64, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), m4), high(2)));
    _mm512_store_si512(mn, _mm512_or_si512(_mm512_and_si512(B, m4), high(4)));
    _mm512_store_si512(mn + 64, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(B, 4), m4), high(6)));
  }

  // acc[t] += the group's super-block at g . token t's super-block x[t].
  template <bool L, int T>
  static AKVQ_ALWAYS_INLINE void superblock(const uint8_t* g, const ActQ16XK* const* x, __m512* acc) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
    const __m512 ndmin = _mm512_sub_ps(
        _mm512_setzero_ps(), _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kOffDmin))));
    alignas(64) uint8_t sc[128], mn[128];  // [8 j][16 r]
    unpack_scales(g, sc, mn);
    const uint8_t* qs = g + kOffQs;
    __m512 sb[T];  // the super-block's sum, lanes = rows
    for (int t = 0; t < T; ++t) sb[t] = _mm512_setzero_ps();
    for (int j = 0; j < 8; ++j) {  // sub-block j: chunks 8k .. 8k + 7 (k = j / 2), nibble half j % 2
      const int k = j / 2, half = j % 2;
      // the weights ahead, an eighth of a group per sub-block (all at once stalls on the misses)
      prefetch_ahead<kAvx512PrefetchAhead>(g + j * (kGroupBytes / 8), kGroupBytes / 8);
      __m512i op[8];  // values 4i .. 4i + 3 of sub-block j of the 16 rows
      for (int i = 0; i < 8; ++i) {
        const __m512i v = _mm512_loadu_si512(qs + 64 * (8 * k + i));
        op[i] = _mm512_and_si512(half ? _mm512_srli_epi16(v, 4) : v, m4);
      }
      const __m512 cj = _mm512_mul_ps(bytes_ps<true>(sc + 16 * j), dw);     // d_w * sc_j
      const __m512 nmj = _mm512_mul_ps(bytes_ps<true>(mn + 16 * j), ndmin);  // -dmin_w * mn_j
      __m512i s[T];
      dot_bytes<L, T, 8>(op, x, 32 * j, s);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        sb[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), cj, sb[t]);
        sb[t] = _mm512_fmadd_ps(nmj, _mm512_set1_ps(x[t]->sums[j]), sb[t]);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(sb[t], _mm512_set1_ps(x[t]->d), acc[t]);
  }
};

// ---- Q6_K: d[16], scales [16 j][16 r] (int8), 32 chunks of ql, 16 chunks of qh ----

struct RQ6_K {
  static constexpr DType kType = DType::Q6_K;
  static constexpr int64_t kGroupBytes = 16 * sizeof(BlockQ6_K);
  static constexpr int kOffSc = 32, kOffQl = 288, kOffQh = 2336;

  template <bool L, int T>
  static AKVQ_ALWAYS_INLINE void superblock(const uint8_t* g, const ActQ16XK* const* x, __m512* acc) {
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
    const uint8_t* ql = g + kOffQl;
    const uint8_t* qh = g + kOffQh;
    __m512 sb[T];
    for (int t = 0; t < T; ++t) sb[t] = _mm512_setzero_ps();
    for (int j = 0; j < 16; ++j) {  // sub-block j: values 16j .. 16j + 15 = 128 hf + 32 k + l0 ..
      const int hf = j / 8, k = (j % 8) / 2, m0 = 4 * (j % 2);
      if (j % 2 == 0) prefetch_ahead<kAvx512PrefetchAhead>(g + (j / 2) * (kGroupBytes / 8), kGroupBytes / 8);
      __m512i op[4];  // values 4i .. 4i + 3 of sub-block j (q6, 0..63) of the 16 rows
      for (int i = 0; i < 4; ++i) {
        const int m = m0 + i;  // 4-byte piece of the half's 32 values of this k
        const __m512i lo = _mm512_loadu_si512(ql + 64 * (16 * hf + 8 * (k & 1) + m));
        const __m512i hi = _mm512_loadu_si512(qh + 64 * (8 * hf + m));
        const __m512i l4 = k >= 2 ? _mm512_srli_epi16(lo, 4) : lo;  // the nibble, and garbage above
        // bits 2k, 2k + 1 of qh moved to bits 4, 5
        const __m512i h2 = 2 * k <= 4 ? _mm512_slli_epi16(hi, 4 - 2 * k) : _mm512_srli_epi16(hi, 2 * k - 4);
        // (l4 & 15) | (h2 & 0x30): bitwise select of l4 where m4 is set, else h2 & 0x30
        op[i] = _mm512_ternarylogic_epi32(m4, l4, _mm512_and_si512(h2, m30), 0xCA);
      }
      const __m512 cj = _mm512_mul_ps(bytes_ps<false>(g + kOffSc + 16 * j), dw);  // d_w * sc_j
      __m512i s[T];
      dot_bytes<L, T, 4>(op, x, 16 * j, s);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512i sj = _mm512_add_epi32(s[t], _mm512_set1_epi32(x[t]->off16[j]));  // the -32 offset
        sb[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sj), cj, sb[t]);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(sb[t], _mm512_set1_ps(x[t]->d), acc[t]);
  }
};

// y[t * ldy + r] = row r . token t0 + t for the 16 rows of the group at w, t < T. L: 16-bit levels.
template <class K, bool L, int T>
void tile(const uint8_t* w, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  const int64_t nb = n_in / ops::kQKK;
  const ActQ16XK* xr[T];
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const ActQ16XK*>(x.data + (t0 + t) * x.stride);
  __m512 acc[T];  // [16] lanes = rows
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const ActQ16XK* xb[T];
    for (int t = 0; t < T; ++t) xb[t] = xr[t] + b;
    K::template superblock<L, T>(w + b * K::kGroupBytes, xb, acc);
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

template <class V, class K>
struct Tiles {
  // one group of 16 rows (kShape.row_unit) x up to 8 tokens (1 x 4, 6 or 8: the same speed
  // within the noise, 1.1B Q4_K ffn shapes, 64 tokens)
  static constexpr TileShape kShape = {1, 8, 1, 1, 8, ActFormat::Q16XK, kPackR16B, 16};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    static_assert(R == 1, "one group of 16 rows per tile");
    (void)w_stride;
    tile<K, V::kL, T>(w, x, t0, n_in, y, ldy);
  }
};

AKVQ_AVX512_END

template <bool L>
struct Avx512KR16B {
  static constexpr bool kL = L;  // 16-bit activation levels (an l pass)
};

}  // namespace

const TileKernels* simd_kernels_kquant_r16b_avx512(DType t, int act_bits) {
  return act_bits == 8 ? find_tiles<Tiles, Avx512KR16B<false>, RQ4_K, RQ6_K>(t)
                       : find_tiles<Tiles, Avx512KR16B<true>, RQ4_K, RQ6_K>(t);
}

#else

const TileKernels* simd_kernels_kquant_r16b_avx512(DType, int) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
