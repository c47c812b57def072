// Q16X activation rows (ops/qblocks.h) straight from the floats with AVX-512: per block of 32
// values two registers, the scale and integers of quantize_row_q16 (the same amax, d = amax / qmax,
// one multiply by 1/d, round-half-even, clamp) and their bytes stored in the Q16X places by the
// truncating narrow (vpmovdb), without the Q16 row and the byte loops of the portable path
// (act_quant_q16x.cpp), which took ~7% of a SmolLM2 batch-8 step (bench/RESULTS.md). The bytes
// are the portable path's, bit for bit (tests/cpp/test_act_q16x.cpp).
#include <cstdint>
#include <cstring>

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

void quantize_q16x(const float* x, uint8_t* out, int64_t n, DType weight, int qmax) {
  const bool offset_high = weight == DType::Q8_0;  // h + 128 (the unsigned operand there)
  const bool split = qmax > 127;                   // 16-bit levels: h = q >> 8, l = q & 255
  const int64_t nb = n / ops::kQK;
  const int64_t ng = (n + ops::kQ16XGroup - 1) / ops::kQ16XGroup;
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 lo = _mm512_set1_ps(-static_cast<float>(qmax)), hi = _mm512_set1_ps(static_cast<float>(qmax));
  const __m512i bias = _mm512_set1_epi32(offset_high ? 128 : 0), m255 = _mm512_set1_epi32(255);
  std::memset(out, 0, static_cast<size_t>(ng * ops::kQ16XGroupBytes));
  for (int64_t g = 0; g < ng; ++g) {
    uint8_t* grp = out + g * ops::kQ16XGroupBytes;
    uint8_t* h = grp;
    uint8_t* l = grp + 128;
    float* d16 = reinterpret_cast<float*>(grp + 256);
    uint8_t* o16 = grp + 320;
    for (int k = 0; k < 4; ++k) {
      const int64_t b = 4 * g + k;
      if (b >= nb) {  // missing block: h reads as 0 (Q8_0: 128)
        if (offset_high) {
          std::memset(h + 16 * k, 128, 16);
          std::memset(h + 64 + 16 * k, 128, 16);
        }
        continue;
      }
      const __m512 x0 = _mm512_loadu_ps(x + b * ops::kQK), x1 = _mm512_loadu_ps(x + b * ops::kQK + 16);
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
      const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
      for (int half = 0; half < 2; ++half) {  // values 16 half + i at h[64 half + 16k + i]
        if (split) {
          store_bytes(h + 64 * half + 16 * k, _mm512_add_epi32(_mm512_srai_epi32(q[half], 8), bias));
          store_bytes(l + 64 * half + 16 * k, _mm512_and_si512(q[half], m255));
        } else {
          store_bytes(h + 64 * half + 16 * k, _mm512_add_epi32(q[half], bias));
        }
      }
      for (int j = 0; j < 4; ++j) d16[4 * k + j] = d;
      if (weight == DType::Q4_0) {
        const int32_t off = -8 * sum;  // (nibble - 8) folded into the integer dot
        std::memcpy(o16 + 16 * k, &off, 4);
      } else if (weight == DType::Q4_1) {
        const float s = d * static_cast<float>(sum);
        std::memcpy(o16 + 16 * k, &s, 4);
      }
    }
  }
}

AKVQ_AVX512_END

}  // namespace

bool quantize_row_q16x_avx512(const float* x, void* out_row, int64_t n, DType weight, int qmax) {
  quantize_q16x(x, static_cast<uint8_t*>(out_row), n, weight, qmax);
  return true;
}

#else

bool quantize_row_q16x_avx512(const float*, void*, int64_t, DType, int) {
  return false;
}

#endif

}  // namespace akvq::cpu
