// AVX-512 VNNI tiles for Q4_0, Q4_1 and Q8_0 weights in the R16B layout (cpu/qgemm.h: 16 rows
// interleaved in 4-byte pieces) against Q16X rows (16-bit activation levels) or Q8X rows (8-bit
// levels, h = q), chosen at run time (cpu/isa.h). Lanes are rows: one 64-byte chunk holds quant
// bytes 4c .. 4c + 3 of each of the 16 rows (Q4: low nibbles = values 4c .. 4c + 3, high nibbles =
// values 16 + 4c .. 16 + 4c + 3; Q8_0: values 4c .. 4c + 3), and the byte dot (vpdpbusd, 4 u8 x s8
// products summed per int32 lane) against the token's 4 matching bytes broadcast leaves each row's
// partial dot in its own lane. Per block of 32 values, 16 rows and one token: 8 byte dots with 8-bit
// levels (16 with 16-bit ones), one conversion and two or three f32 operations. The G4 tiles
// (qgemm_q32_avx512.cpp), whose lanes are pieces of blocks, spend as many f32 operations per 4
// blocks of each (row, token) and need more registers than their 4 x 8 tile has: SmolLM2 batch-8
// step 10.8 -> 7.0 ms with 16-bit levels (Q4_1 layers, bench/RESULTS.md).
//
// 16-bit levels q = 256 h + l (Q16X: h signed, or h + 128 unsigned for Q8_0; l unsigned):
// S = ((w . h) << 8) + l . w. Q4 (w = nibble 0..15): |w . h| <= 32 * 15 * 128 per lane before the
// shift and S <= 32 * 15 * 32767 < 2^24, exact in f32. Q8_0 (w signed): the h pass is seeded with
// -128 * sum(w) (computed per block from the weights), so that it sums w . h exactly; |S| <= 32 *
// 128 * 32767 < 2^27 is rounded once by the conversion. Per (row, token, block), in this order
// whatever the tile:
// - Q4_0: S0 = S + (-8 * sum(q)) (the block's int32 offset lane of the activation row) is the
//   exact dot of the signed weights (|S0| <= 32 * 8 * 32767 < 2^24), acc = fma(f32(S0), d_w * d_x, acc);
// - Q4_1: acc = fma(f32(S), d_w * d_x, acc), then acc = fma(m_w, s_x, acc);
// - Q8_0: acc = fma(f32(S), d_w * d_x, acc).
// y = acc. The same sums as the file-layout tiles in another order: equal to f32 rounding, and a
// (row, token) result is bit for bit the same whatever tile or batch computes it, so decode equals
// prefill and a batched step equals single streams.
#include <cstdint>
#include <cstring>

#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "cpu/qgemm_q32_tiles.h"
#include "cpu/qgemm_r16b_avx512.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

// Q16X / Q8X offsets (ops/qblocks.h) of block k (< 4) of a group: + 16k, then + 4c for chunk c.
constexpr int kHLow = 0;     // h of values 0..15
constexpr int kHHigh = 64;   // h of values 16..31
constexpr int kLLow = 128;   // + the h offset: l (16-bit levels only)
constexpr int kD16 = 256;    // f32 d of the block
constexpr int kO16 = 320;    // Q4_0: int32 -8 * sum(q); Q4_1: f32 s = d * sum(q)

AKVQ_AVX512_BEGIN

inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// Q16X / Q8X offset of the h bytes matching operand register i of a block (see tile()).
template <class K>
constexpr int h_offset(int i) {
  if constexpr (K::kType == DType::Q8_0) return i < 4 ? kHLow + 4 * i : kHHigh + 4 * (i - 4);
  return (i % 2 == 0 ? kHLow : kHHigh) + 4 * (i / 2);
}

// y[t * ldy + r] = row r . token t0 + t for the 16 rows of the group at w, t < T. L: 16-bit levels.
template <class K, bool L, int T>
void tile(const uint8_t* w, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  constexpr int kScaleBytes = K::kQsOff;  // 2 (d) or 4 (d, m) per row
  constexpr int64_t kGroupBytes = 16 * K::kBytes;
  constexpr bool kQ4_0 = K::kType == DType::Q4_0, kQ4_1 = K::kType == DType::Q4_1;
  constexpr bool kQ8 = K::kType == DType::Q8_0;
  const int64_t nb = n_in / ops::kQK;
  const uint8_t* xr[T];
  for (int t = 0; t < T; ++t) xr[t] = x.data + (t0 + t) * x.stride;
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512 acc[T];  // [16] lanes = rows
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + b * kGroupBytes;
    prefetch_ahead<kAvx512PrefetchAhead>(g, kGroupBytes);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
    __m512 mw = _mm512_setzero_ps();
    if constexpr (kQ4_1) mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 32)));
    const uint8_t* qs = g + 16 * kScaleBytes;
    // op[i]: [64] bytes, 4 values of each row, matching the token's 4 h (l) bytes at h_offset(i).
    // Q4: op[2c] / op[2c + 1] = the low / high nibbles of chunk c (values 4c.. / 16 + 4c..);
    // Q8_0: op[c] = chunk c (values 4c ..), signed.
    __m512i op[8];
    __m512i seed = _mm512_setzero_si512();  // Q8_0: -128 * sum(w) per row (the h bytes are h + 128)
    for (int c = 0; c < (kQ8 ? 8 : 4); ++c) {
      const __m512i v = _mm512_loadu_si512(qs + 64 * c);
      if constexpr (kQ8) {
        op[c] = v;
        seed = _mm512_dpbusd_epi32(seed, _mm512_set1_epi8(1), v);
      } else {
        op[2 * c] = _mm512_and_si512(v, m4);
        op[2 * c + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      }
    }
    if constexpr (kQ8) seed = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(seed, 7));
    const int64_t xo = (b / 4) * ops::kQ16XGroupBytes + 16 * (b % 4);  // block b in a Q16X row
    // Operand-major, tokens inner: the T dot chains are independent, so consecutive byte dots do
    // not wait on each other (one chain of 16 per token: 7.8 -> 7.0 ms per SmolLM2 batch-8 step),
    // and everything stays in registers (GCC kept acc[] on the stack with the token loop outside).
    const uint8_t* xb[T];  // the block's bytes of each token
    for (int t = 0; t < T; ++t) xb[t] = xr[t] + xo;
    __m512i s[T];
    r16b::dot_bytes<L, kQ8, T, 8>(op, seed, xb, [](int i) { return h_offset<K>(i); }, kLLow, s);
#pragma GCC unroll 12
    for (int t = 0; t < T; ++t) {
      const uint8_t* a = xr[t] + xo;
      if constexpr (kQ4_0) s[t] = _mm512_add_epi32(s[t], r16b::bcast32(a + kO16));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dw, _mm512_set1_ps(load_f32(a + kD16))), acc[t]);
      if constexpr (kQ4_1) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(load_f32(a + kO16)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

template <class V, class K>
struct Tiles {
  // one group of 16 rows (kShape.row_unit) x up to 8 tokens (2 x 8 dot sums and accumulators and
  // the block's 8 operands fill the 32 registers)
  static constexpr TileShape kShape = {1, 8, 1, 1, 8, V::kL ? ActFormat::Q16X : ActFormat::Q8X, kPackR16B, 16};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    static_assert(R == 1, "one group of 16 rows per tile");
    (void)w_stride;
    tile<K, V::kL, T>(w, x, t0, n_in, y, ldy);
  }
};

AKVQ_AVX512_END

template <bool L>
struct Avx512R16B {
  static constexpr bool kL = L;  // 16-bit activation levels (an l pass)
};

}  // namespace

const TileKernels* simd_kernels_q32_r16b_avx512(DType t, int act_bits) {
  return act_bits == 8 ? find_tiles<Tiles, Avx512R16B<false>, q32::Q4_0, q32::Q4_1, q32::Q8_0>(t)
                       : find_tiles<Tiles, Avx512R16B<true>, q32::Q4_0, q32::Q4_1, q32::Q8_0>(t);
}

#else

const TileKernels* simd_kernels_q32_r16b_avx512(DType, int) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
