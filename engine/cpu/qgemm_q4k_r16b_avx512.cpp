// AVX-512 VNNI tiles for Q4_K weights in the R16B layout (cpu/qgemm.h: 16 rows interleaved in
// 4-byte pieces, their scales and mins re-split) against Q16XK rows (ops/qblocks.h: ActQ16XK
// super-blocks; 16-bit levels split into bytes h, l, or 8-bit levels h = q), chosen at run time
// (cpu/isa.h). Lanes are rows, as in the Q4_0 / Q4_1 / Q8_0 R16B tiles (qgemm_q32_r16b_avx512.cpp):
// chunk c of a super-block holds qs bytes 4c .. 4c + 3 of each of the 16 rows; its low nibbles are
// values 4i .. 4i + 3 of sub-block 2k of every row, its high nibbles those of sub-block 2k + 1
// (k = c / 8, i = c % 8), and one byte dot (vpdpbusd) against the token's 4 matching bytes
// broadcast adds each row's 4 products to its own int32 lane. The file-layout tiles
// (qgemm_kquant_avx512.cpp) unpack every row's super-block to int16 weights times their scale and
// run vpdpwssd per row and token; here the unpack is gone and one byte dot serves 16 rows.
//
// Per (row, token, super-block), in this order whatever the tile:
//   for j = 0..7 (sub-blocks): S_j = sum of nibble * q over the sub-block's 32 values, exact in
//     int32: with 16-bit levels (h pass) << 8 + (l pass), |S_j| <= 32 * 15 * 32767 < 2^24, so
//     f32(S_j) is exact; with 8-bit levels one pass;
//     sb = fma(f32(S_j), d_w * sc_j, sb); sb = fma(-dmin_w * mn_j, sums_j, sb)
//   acc = fma(sb, d_x, acc)
// which is d_x * (d_w sum_j sc_j S_j - dmin_w sum_j mn_j sums_j): the Q4_K dot of the scalar
// reference (ops/ref_quant.cpp) with the f32 roundings in another order, so the two layouts agree
// to f32 rounding, and a (row, token) result is bit for bit the same whatever tile or batch
// computes it (decode equals prefill, a batched step equals single streams).
#include <cstdint>
#include <cstring>

#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

using ops::ActQ16XK;
using ops::BlockQ4_K;

constexpr int64_t kGroupBytes = 16 * sizeof(BlockQ4_K);  // one super-block of the 16 rows
constexpr int kOffDmin = 32, kOffA = 64, kOffB = 128, kOffH = 192, kOffQs = 256;

AKVQ_AVX512_BEGIN

inline __m512i bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The scales and mins of the group's super-block as [8 j][16 r] bytes (the A, B, H split undone).
AKVQ_ALWAYS_INLINE void unpack_scales(const uint8_t* g, uint8_t* sc, uint8_t* mn) {
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

// 16 bytes at p widened to 16 f32 lanes.
inline __m512 bytes_ps(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(p))));
}

// y[t * ldy + r] = row r . token t0 + t for the 16 rows of the group at w, t < T. L: 16-bit levels.
template <bool L, int T>
void tile(const uint8_t* w, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  const int64_t nb = n_in / ops::kQKK;
  const ActQ16XK* xr[T];
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const ActQ16XK*>(x.data + (t0 + t) * x.stride);
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512 acc[T];  // [16] lanes = rows
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + b * kGroupBytes;
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
      const __m512 cj = _mm512_mul_ps(bytes_ps(sc + 16 * j), dw);     // d_w * sc_j
      const __m512 nmj = _mm512_mul_ps(bytes_ps(mn + 16 * j), ndmin);  // -dmin_w * mn_j
      // S_j of each token: exact integer sums, so how they are split does not change them.
      __m512i s[T];
      if constexpr (T == 1) {
        // Decode: the h and l passes as four independent chains (operands i even / odd), so that
        // one token is not bound by the byte dot's latency.
        __m512i hs[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()}, ls[2] = {hs[0], hs[1]};
        for (int i = 0; i < 8; ++i) {
          hs[i % 2] = _mm512_dpbusd_epi32(hs[i % 2], op[i], bcast32(xr[0][b].h + 32 * j + 4 * i));
          if constexpr (L) ls[i % 2] = _mm512_dpbusd_epi32(ls[i % 2], bcast32(xr[0][b].l + 32 * j + 4 * i), op[i]);
        }
        const __m512i h = _mm512_add_epi32(hs[0], hs[1]);
        s[0] = L ? _mm512_add_epi32(_mm512_slli_epi32(h, 8), _mm512_add_epi32(ls[0], ls[1])) : h;
      } else {
        // Operand-major, tokens inner: the T dot chains are independent (qgemm_q32_r16b_avx512.cpp);
        // one chain per token keeps the tile in the registers.
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_si512();
        for (int i = 0; i < 8; ++i) {  // h pass: nibble unsigned, h signed
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) s[t] = _mm512_dpbusd_epi32(s[t], op[i], bcast32(xr[t][b].h + 32 * j + 4 * i));
        }
        if constexpr (L) {  // l pass: l unsigned, nibble signed (0..15)
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) s[t] = _mm512_slli_epi32(s[t], 8);
          for (int i = 0; i < 8; ++i) {
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) s[t] = _mm512_dpbusd_epi32(s[t], bcast32(xr[t][b].l + 32 * j + 4 * i), op[i]);
          }
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        sb[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), cj, sb[t]);
        sb[t] = _mm512_fmadd_ps(nmj, _mm512_set1_ps(xr[t][b].sums[j]), sb[t]);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(sb[t], _mm512_set1_ps(xr[t][b].d), acc[t]);
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

template <class V, class K>
struct Tiles {
  // one group of 16 rows (kShape.row_unit) x up to 8 tokens
  static constexpr TileShape kShape = {1, 8, 1, 1, 8, ActFormat::Q16XK, kPackR16B, 16};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    static_assert(R == 1, "one group of 16 rows per tile");
    (void)w_stride;
    tile<V::kL, T>(w, x, t0, n_in, y, ldy);
  }
};

AKVQ_AVX512_END

template <bool L>
struct Avx512Q4KR16B {
  static constexpr bool kL = L;  // 16-bit activation levels (an l pass)
};

struct KQ4_K {
  static constexpr DType kType = DType::Q4_K;
};

}  // namespace

const TileKernels* simd_kernels_q4k_r16b_avx512(DType t, int act_bits) {
  return act_bits == 8 ? find_tiles<Tiles, Avx512Q4KR16B<false>, KQ4_K>(t)
                       : find_tiles<Tiles, Avx512Q4KR16B<true>, KQ4_K>(t);
}

#else

const TileKernels* simd_kernels_q4k_r16b_avx512(DType, int) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
