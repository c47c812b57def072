// NEON version of the 16-bit activation quantization (act_quant.cpp holds the AVX2 one),
// bit-identical to ops::ref::quantize_row_q16 / quantize_row_q16k: the same f32 amax,
// d = amax / 32767, one f32 multiply by 1/d, round-half-even (frintn), clamp, exact integer sums.
#include "cpu/act_quant_rows.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_NEON
namespace {

// x[n] (n a multiple of 32) -> q[n] int16 with one scale; sums32[k] = sum of q[32k..32k+31].
// Returns d. The row layouts around it are in act_quant_rows.h.
inline float quantize_block16(const float* x, int n, int16_t* q, int32_t* sums32, int qmax) {
  float32x4_t amax = vdupq_n_f32(0.0f);
  for (int i = 0; i < n; i += 4) amax = vmaxq_f32(amax, vabsq_f32(vld1q_f32(x + i)));
  const float m = vmaxvq_f32(amax);
  const float d = m >= ops::kActTiny ? m / static_cast<float>(qmax) : 0.0f;
  const float32x4_t id = vdupq_n_f32(d != 0.0f ? 1.0f / d : 0.0f);
  const float32x4_t lo = vdupq_n_f32(-static_cast<float>(qmax)), hi = vdupq_n_f32(static_cast<float>(qmax));
  for (int k = 0; k < n / 32; ++k) {
    int32x4_t sum = vdupq_n_s32(0);
    for (int i = 0; i < 8; i += 2) {
      int32x4_t v[2];
      for (int j = 0; j < 2; ++j) {
        float32x4_t r = vrndnq_f32(vmulq_f32(vld1q_f32(x + 32 * k + 4 * (i + j)), id));
        r = vminq_f32(vmaxq_f32(r, lo), hi);
        v[j] = vcvtq_s32_f32(r);  // r is integral: the conversion is exact
        sum = vaddq_s32(sum, v[j]);
      }
      vst1q_s16(q + 32 * k + 4 * i, vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1])));
    }
    sums32[k] = vaddvq_s32(sum);
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

#endif  // AKVQ_NEON

}  // namespace akvq::cpu
