// Q16X activation rows (ops/qblocks.h) straight from the floats with AVX-512: per block of 32
// values two registers, the scale and integers of quantize_row_q16 (the same amax, d = amax / qmax,
// one multiply by 1/d, round-half-even, clamp) and their bytes stored in the Q16X places by the
// truncating narrow (vpmovdb), without the Q16 row and the byte loops of the portable path
// (act_quant_q16x.cpp), which took ~7% of a SmolLM2 batch-8 step (bench/RESULTS.md). The bytes
// are the portable path's, bit for bit (tests/cpp/test_act_q16x.cpp).
#include <cstdint>
#include <cstring>

#include "cpu/act_q16x_rows.h"
#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)

namespace {

AKVQ_AVX512_BEGIN

// The 16 int32 lanes of v as bytes at p (truncated: two's complement low byte).
inline void store_bytes(uint8_t* p, __m512i v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
}

// Block b of x: its scale and integers as quantize_row_q16 makes them, stored as Q16X bytes.
Q16XBlock quantize_block(const float* x, int qmax, bool offset_high, uint8_t* h_lo, uint8_t* h_hi, uint8_t* l_lo,
                         uint8_t* l_hi) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 lo = _mm512_set1_ps(-static_cast<float>(qmax)), hi = _mm512_set1_ps(static_cast<float>(qmax));
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, x0), _mm512_andnot_ps(sign, x1)));
  const float d = m >= ops::kActTiny ? m / static_cast<float>(qmax) : 0.0f;
  const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  __m512i q[2];
  const __m512 xs[2] = {x0, x1};
  for (int half = 0; half < 2; ++half) {
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(xs[half], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
    q[half] = _mm512_cvtps_epi32(r);
  }
  const __m512i bias = _mm512_set1_epi32(offset_high ? 128 : 0);
  for (int half = 0; half < 2; ++half) {
    if (qmax > 127) {  // 16-bit levels: h = q >> 8, l = q & 255
      store_bytes(half ? h_hi : h_lo, _mm512_add_epi32(_mm512_srai_epi32(q[half], 8), bias));
      store_bytes(half ? l_hi : l_lo, _mm512_and_si512(q[half], _mm512_set1_epi32(255)));
    } else {
      store_bytes(half ? h_hi : h_lo, _mm512_add_epi32(q[half], bias));
    }
  }
  return {d, _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]))};
}

AKVQ_AVX512_END

}  // namespace

void quantize_row_q16x_avx512(const float* x, void* out_row, int64_t n, DType weight, int qmax) {
  write_q16x_row(static_cast<uint8_t*>(out_row), n, weight,
                 [&](int64_t b, uint8_t* h_lo, uint8_t* h_hi, uint8_t* l_lo, uint8_t* l_hi) {
                   return quantize_block(x + b * ops::kQK, qmax, weight == DType::Q8_0, h_lo, h_hi, l_lo, l_hi);
                 });
}

#endif

}  // namespace akvq::cpu
