// Fast 16-bit activation quantization for the quantized matmul (formats in ops/qblocks.h),
// bit-identical to the scalar references ops::ref::quantize_row_q16 / quantize_row_q16k: the same
// f32 amax, d = amax / 32767, one f32 multiply by 1/d, round-half-even, clamp, exact integer sums.
#include "cpu/act_quant_rows.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"
#include "ops/ref.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

// x[n] (n a multiple of 32) -> q[n] int16 with one scale; sums32[k] = sum of q[32k..32k+31].
// Returns d. The row layouts around it are in act_quant_rows.h.
inline float quantize_block16(const float* x, int n, int16_t* q, int32_t* sums32, int qmax) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  const float m = hmax(amax);
  const float d = m >= ops::kActTiny ? m / static_cast<float>(qmax) : 0.0f;
  const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  const __m256 lo = _mm256_set1_ps(-static_cast<float>(qmax)), hi = _mm256_set1_ps(static_cast<float>(qmax));
  for (int k = 0; k < n / 32; ++k) {
    __m256i v[4];
    for (int i = 0; i < 4; ++i) {
      __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * k + 8 * i), id),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
      v[i] = _mm256_cvtps_epi32(r);
    }
    sums32[k] = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3])));
    // packs interleaves the two sources per 128-bit lane; the qword permute restores the order
    const __m256i p01 = _mm256_permute4x64_epi64(_mm256_packs_epi32(v[0], v[1]), 0xd8);
    const __m256i p23 = _mm256_permute4x64_epi64(_mm256_packs_epi32(v[2], v[3]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * k), p01);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * k + 16), p23);
  }
  return d;
}

}  // namespace

void quantize_row_q16(const float* x, void* out_row, int64_t n, int qmax) {
  quantize_row_q16_with<quantize_block16>(x, out_row, n, qmax);
}

void quantize_row_q16k(const float* x, void* out_act, int64_t n, int qmax) {
  quantize_row_q16k_with<quantize_block16>(x, out_act, n, qmax);
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (the NEON versions are in act_quant_neon.cpp)

void quantize_row_q16(const float* x, void* out_row, int64_t n, int qmax) {
  ops::ref::quantize_row_q16(x, out_row, n, qmax);
}
void quantize_row_q16k(const float* x, void* out, int64_t n, int qmax) {
  ops::ref::quantize_row_q16k(x, static_cast<ops::ActQ16K*>(out), n, qmax);
}

#endif

}  // namespace akvq::cpu
