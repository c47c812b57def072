// AVX2 tiles for Q4_0 and Q4_1 weights in the R8B layout (cpu/qgemm.h: 8 rows interleaved in
// 4-byte pieces) against Q8X activation rows (ops/qblocks.h: Q16X with 8-bit levels, h = q), the
// kernels of TensorView::act_bits == 8 on AVX2.
// One 32-byte chunk holds 4 nibble bytes of each of the 8 rows: its low nibbles are values
// 4c .. 4c + 3 of every row, its high nibbles values 16 + 4c .. 16 + 4c + 3. The byte dot (u8 nibble
// x s8 token value, pairs summed to int16) against the token's 4 matching bytes broadcast leaves
// each row's partial dot in its two int16 lanes: lanes are rows, no horizontal sums. Per block of
// 32 values, 8 rows and one token: 8 byte dots and one widening madd (the 16-bit R8 tiles: 16
// madds and 16 adds).
// Integer bounds: a pair sum is <= 2 * 15 * 127 = 3810; 8 of them per int16 lane <= 30480 < 2^15.
// Arithmetic per (row, token, block), S = sum(nibble * q) exact in int32:
// - Q4_0: the offset enters the integer dot: S0 = S + (-8 * sum(q)) (the row's int32) is the
//   exact dot of the signed weights, and acc = fma(f32(S0), d_w * d_x, acc), y = acc. Exact up to
//   the f32 products and sums of the blocks, so it agrees with the file-layout tiles (which add the
//   offset in f32) and the scalar reference to f32 rounding, not bit for bit.
// - Q4_1: acc = fma(f32(S), d_w * d_x, acc) and accm = fma(m, s, accm), y = acc + accm: the
//   operations and order of the file-layout tiles with the same 8-bit levels (qgemm_q32.cpp), so
//   the results are bit for bit theirs. (A second pass for the offsets, to free registers in the
//   byte-dot loop, was slower: 231 -> 272 us for one token of 2048 -> 5632.)
#include "cpu/qgemm.h"
#include "cpu/qgemm_q32_tiles.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

// Q8X row offsets (ops/qblocks.h) of block k (< 4) of a group.
constexpr int kHLow = 0;    // + 16k: h of values 0..15
constexpr int kHHigh = 64;  // + 16k: h of values 16..31
constexpr int kD16 = 256;   // + 16k: f32 d
constexpr int kO16 = 320;   // + 16k: Q4_0 int32 -8 * sum(q); Q4_1 f32 s

// y[t * ldy + r] = row r . token t0 + t for the 8 rows of the group at w, t < T.
template <class K, int T>
void tile(const uint8_t* w, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  constexpr int kScaleBytes = K::kQsOff;       // 2 (d) or 4 (d, m) per row
  constexpr int64_t kGroupBytes = 8 * K::kBytes;
  constexpr bool kQ4_0 = K::kType == DType::Q4_0;
  const int64_t nb = n_in / ops::kQK;
  const uint8_t* xr[T];
  for (int t = 0; t < T; ++t) xr[t] = x.data + (t0 + t) * x.stride;
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  __m256 acc[T], accm[T];  // lanes = rows; accm: Q4_1's offsets m * s
  for (int t = 0; t < T; ++t) acc[t] = accm[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + b * kGroupBytes;
    prefetch_ahead(g, kGroupBytes);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const uint8_t* qs = g + 8 * kScaleBytes;
    const int64_t xo = (b / 4) * ops::kQ16XGroupBytes + 16 * (b % 4);  // block b in a Q8X row
    __m256i s16[T];
    for (int t = 0; t < T; ++t) s16[t] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      const __m256i lo = _mm256_and_si256(v, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      for (int t = 0; t < T; ++t) {
        const uint8_t* h = xr[t] + xo + 4 * c;
        s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(lo, bcast32(h + kHLow)));
        s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(hi, bcast32(h + kHHigh)));
        // Keeps the sum in its register chunk by chunk: otherwise GCC hoists all 8T byte dots of
        // the block ahead of the adds and spills them to the stack (seen in perf annotate).
        asm("" : "+x"(s16[t]));
      }
    }
    for (int t = 0; t < T; ++t) {
      const float dx = *reinterpret_cast<const float*>(xr[t] + xo + kD16);
      __m256i s = _mm256_madd_epi16(s16[t], ones);
      if constexpr (kQ4_0) {  // + (-8 * sum(q)): the dot of the signed weights
        s = _mm256_add_epi32(s, _mm256_set1_epi32(*reinterpret_cast<const int32_t*>(xr[t] + xo + kO16)));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc[t]);
    }
    if constexpr (!kQ4_0) {
      const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
      for (int t = 0; t < T; ++t) {
        const float sx = *reinterpret_cast<const float*>(xr[t] + xo + kO16);
        accm[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(sx), accm[t]);
      }
    }
  }
  store_row_lanes<T>(acc, accm, K::kMinMul, y, ldy);
}

template <class V, class K>
struct Tiles {
  // one group of 8 rows (kShape.row_unit) x up to 8 tokens
  static constexpr TileShape kShape = {1, 8, 1, 1, 4, ActFormat::Q8X, kPackR8B, 8};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    static_assert(R == 1, "one group of 8 rows per tile");
    (void)w_stride;
    tile<K, T>(w, x, t0, n_in, y, ldy);
  }
};

struct Avx2R8B {};

}  // namespace

const TileKernels* simd_kernels_q4_r8b(DType t) {
  return find_tiles<Tiles, Avx2R8B, q32::Q4_0, q32::Q4_1>(t);
}

#else

const TileKernels* simd_kernels_q4_r8b(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
