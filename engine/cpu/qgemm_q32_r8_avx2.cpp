// AVX2 tiles for Q4_0, Q4_1 and Q8_0 weights in the R8 layout (cpu/qgemm.h: 8 rows interleaved)
// against Q16 activation rows. One register holds 2 consecutive values of each of the 8 rows
// (int16 lane pairs), so madd with the token's matching 2 values broadcast gives the 8 rows' partial
// dots in the 8 int32 lanes: lanes are rows, and no horizontal sum is needed (the file-layout
// tiles, qgemm_q32.cpp, reduce 8 lanes per row and token). Per block of 32 values, 8 rows and one
// token: 16 madds; the 16 weight registers are unpacked once per block for all T tokens.
// Arithmetic per (row, token): the exact int32 block dot (|sum| <= 32 * 128 * 32767 < 2^28), then
// acc = fma(f32(dot), d_w * d_x, acc) and, for Q4_0 / Q4_1, accm = fma(mult, s_x, accm) block after
// block, y = acc + kMinMul * accm: the same operations in the same order as the file-layout tiles,
// so the layout changes no bit of the result (and decode equals prefill).
#include "cpu/qgemm.h"
#include "cpu/qgemm_q32_tiles.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

// Weight types in R8. A group block (the same block index of 8 rows) is kScaleBytes * 8 bytes of
// fp16 scales (d of the 8 rows; Q4_1: then m of the 8 rows) and the quants: chunk i of 16 bytes
// holds bytes 2i, 2i + 1 of each row's quants in turn. unpack2 gives, for chunk i, the int16
// registers of values (2i, 2i + 1) per row and, for the Q4 types, of values (2i + 16, 2i + 17).
template <class B>
struct RQ4 : B {  // Q4_0, Q4_1: byte j = value j (low nibble) | value j + 16 (high nibble)
  static constexpr int kChunks = 8;
  static constexpr int kScaleBytes = B::kQsOff;  // 2 (d) or 4 (d, m)
  static inline void unpack2(const uint8_t* chunk, __m256i& a, __m256i& b) {
    const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk)));
    a = _mm256_and_si256(v, _mm256_set1_epi16(15));
    b = _mm256_srli_epi16(v, 4);
  }
};
using RQ4_0 = RQ4<q32::Q4_0>;
using RQ4_1 = RQ4<q32::Q4_1>;

struct RQ8_0 : q32::Q8_0 {  // byte j = value j
  static constexpr int kChunks = 16;
  static constexpr int kScaleBytes = 2;
};

// y[t * ldy + r] = row r . token t0 + t for the 8 rows of the group at w, t < T.
template <class K, int T>
void tile(const uint8_t* w, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  constexpr int64_t kGroupBytes = 8 * K::kBytes;
  constexpr bool kMin = K::kMinOff >= 0;
  const int64_t nb = n_in / ops::kQK;
  const int16_t* xq[T];
  for (int t = 0; t < T; ++t) xq[t] = ops::act_q16_qs(x.data + (t0 + t) * x.stride);
  __m256 acc[T], accm[T];  // lanes = rows
  for (int t = 0; t < T; ++t) acc[t] = accm[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + b * kGroupBytes;
    prefetch_ahead(g, kGroupBytes);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const uint8_t* qs = g + 8 * K::kScaleBytes;
    __m256i s[T];
    for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_si256();
    for (int i = 0; i < K::kChunks; ++i) {
      if constexpr (K::kChunks == 8) {
        __m256i lo, hi;
        K::unpack2(qs + 16 * i, lo, hi);
        for (int t = 0; t < T; ++t) {
          const int16_t* xb = xq[t] + b * ops::kQK + 2 * i;
          s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(lo, bcast32(xb)));
          s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(hi, bcast32(xb + 16)));
        }
      } else {
        const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16 * i)));
        for (int t = 0; t < T; ++t) {
          s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(v, bcast32(xq[t] + b * ops::kQK + 2 * i)));
        }
      }
    }
    const float* dx = x.d_tr + b * x.tr_stride + t0;
    for (int t = 0; t < T; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), _mm256_mul_ps(dw, _mm256_set1_ps(dx[t])), acc[t]);
    }
    if constexpr (kMin) {
      // the offset multiplier of the 8 rows: Q4_1: m, after the d's; Q4_0: d (times kMinMul = -8)
      const __m256 mw =
          K::kScaleBytes == 4 ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16))) : dw;
      const float* sx = x.s_tr + b * x.tr_stride + t0;
      for (int t = 0; t < T; ++t) accm[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(sx[t]), accm[t]);
    }
  }
  store_row_lanes<T>(acc, accm, K::kMinMul, y, ldy);
}

template <class V, class K>
struct Tiles {
  // one group of 8 rows (kShape.row_unit) x up to 8 tokens; 4 preferred (ffn shapes of the 1.1B,
  // 64 tokens, best of 5 on a Zen 3 VM: 85 GFLOP/s vs 78-81 with 6 or 8; file layout 67-69)
  static constexpr TileShape kShape = {1, 8, 1, 1, 4, ActFormat::Native, kPackR8, 8};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    static_assert(R == 1, "one group of 8 rows per tile");
    (void)w_stride;
    tile<K, T>(w, x, t0, n_in, y, ldy);
  }
};

struct Avx2R8 {};

}  // namespace

const TileKernels* simd_kernels_q32_r8(DType t) {
  return find_tiles<Tiles, Avx2R8, RQ4_0, RQ4_1, RQ8_0>(t);
}

#else

const TileKernels* simd_kernels_q32_r8(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
