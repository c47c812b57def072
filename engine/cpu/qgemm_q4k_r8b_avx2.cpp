// AVX2 tiles for Q4_K weights in the R8B layout (cpu/qgemm.h: 8 rows interleaved in 4-byte
// pieces, their scales and mins re-split) against Q8K rows (ops/qblocks.h: ActQ8K super-blocks),
// the kernels of TensorView::act_bits == 8 on AVX2.
// Chunk c of a super-block holds qs bytes 4c .. 4c + 3 of each of the 8 rows: its low nibbles are
// sub-block 2k's values 32k' .. of every row, its high nibbles sub-block 2k + 1's (k = c / 8), and
// the token's matching 4 bytes sit at ActQ8K::qs offset 128 (c / 16) + 4 (c % 16) (+ 64 for the
// high nibbles). The byte dot against them broadcast leaves each row's partial dot in its two int16
// lanes (lanes are rows); one madd per sub-block with the rows' scales (int16 lane pairs) widens
// them to int32.
// Integer bounds: a pair sum <= 2 * 15 * 127 = 3810, 8 per int16 lane per sub-block <= 30480 < 2^15;
// the scaled super-block sum <= 8 * 2 * 30480 * 63 < 2^25.
// Per (row, token, super-block): acc = fma(f32(S), d_w * d_x, acc), then the min term
// acc -= dmin_w * sum_j mn_j * ms_j (ms_j = d_x * the integer sum of sub-block j, ActQ8K::ms).
// Decode and prefill run the same operations in the same order, so a token's result is the same
// whatever the batch. The file-layout tiles (qgemm_kquant.cpp) sum the same terms in another
// order: the two layouts agree to f32 rounding, not bit for bit.
#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

using ops::ActQ8K;
using ops::BlockQ4_K;

constexpr int64_t kGroupBytes = 8 * sizeof(BlockQ4_K);  // one super-block of the 8 rows

// The scales and mins of the group's super-block as [8 j][8 r] bytes (the A, B, H split undone).
inline void unpack_scales(const uint8_t* g, uint8_t* sc, uint8_t* mn) {
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
  const __m256i A = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 32));
  const __m256i B = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 64));
  const __m256i H = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 96));
  const auto high = [&](int shift) {  // 2 bits of H at `shift`, moved to bits 4-5 of each byte
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, shift), m3), 4);
  };
  _mm256_store_si256(reinterpret_cast<__m256i*>(sc), _mm256_or_si256(_mm256_and_si256(A, m4), high(0)));
  _mm256_store_si256(reinterpret_cast<__m256i*>(sc + 32),
                     _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), high(2)));
  _mm256_store_si256(reinterpret_cast<__m256i*>(mn), _mm256_or_si256(_mm256_and_si256(B, m4), high(4)));
  _mm256_store_si256(reinterpret_cast<__m256i*>(mn + 32),
                     _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4), high(6)));
}

// y[t * ldy + r] = row r . token t0 + t for the 8 rows of the group at w, t < T.
template <int T>
void tile(const uint8_t* w, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  const int64_t nb = n_in / ops::kQKK;
  const ActQ8K* xr[T];
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const ActQ8K*>(x.data + (t0 + t) * x.stride);
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256 acc[T];  // lanes = rows
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + b * kGroupBytes;
    prefetch_ahead(g, kGroupBytes);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const __m256 dminw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    alignas(32) uint8_t sc[64], mn[64];  // [8 j][8 r]
    unpack_scales(g, sc, mn);
    const uint8_t* qs = g + 128;
    __m256i s32[T];
    for (int t = 0; t < T; ++t) s32[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {  // sub-block j: chunks 8k .. 8k + 7 (k = j / 2), nibble half j % 2
      const int k = j / 2, half = j % 2;
      __m256i s16[T];
      for (int t = 0; t < T; ++t) s16[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int c = 8 * k; c < 8 * k + 8; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
        const __m256i wv = _mm256_and_si256(half ? _mm256_srli_epi16(v, 4) : v, m4);
        const int xo = 128 * (c / 16) + 4 * (c % 16) + 64 * half;
        for (int t = 0; t < T; ++t) {
          s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(wv, bcast32(xr[t][b].qs + xo)));
          // Keeps the sum in its register chunk by chunk (GCC otherwise hoists the byte dots
          // ahead of the adds and spills them; qgemm_q4_r8b_avx2.cpp).
          asm("" : "+x"(s16[t]));
        }
      }
      __m256i scv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 8 * j)));
      scv = _mm256_or_si256(scv, _mm256_slli_epi32(scv, 16));  // the row's scale in both int16 lanes
      for (int t = 0; t < T; ++t) s32[t] = _mm256_add_epi32(s32[t], _mm256_madd_epi16(s16[t], scv));
    }
    for (int t = 0; t < T; ++t) {
      const ActQ8K& xb = xr[t][b];
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[t]), _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc[t]);
      // the mins are converted per token: 8 f32 vectors kept for all T tokens spill (hoisting them
      // measured 82-149 vs 143-158 GFLOP/s, 1.1B ffn_gate, 4 interleaved runs)
      __m256 m = _mm256_setzero_ps();
      for (int j = 0; j < 8; ++j) {
        const __m256 mnj = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn + 8 * j))));
        m = _mm256_fmadd_ps(mnj, _mm256_set1_ps(xb.ms[j]), m);
      }
      acc[t] = _mm256_fnmadd_ps(dminw, m, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(32) float a[8];
    _mm256_store_ps(a, acc[t]);
    for (int r = 0; r < 8; ++r) y[t * ldy + r] = a[r];
  }
}

struct KQ4_K {
  static constexpr DType kType = DType::Q4_K;
};

template <class V, class K>
struct Tiles {
  // one group of 8 rows (kShape.row_unit) x up to 4 tokens (2T + 4 registers in the inner loop)
  static constexpr TileShape kShape = {1, 4, 1, 1, 4, ActFormat::Q8K, kPackR8B, 8};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    static_assert(R == 1, "one group of 8 rows per tile");
    (void)w_stride;
    tile<T>(w, x, t0, n_in, y, ldy);
  }
};

struct Avx2R8B {};

}  // namespace

const TileKernels* simd_kernels_q4k_r8b(DType t) {
  return find_tiles<Tiles, Avx2R8B, KQ4_K>(t);
}

#else

const TileKernels* simd_kernels_q4k_r8b(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
