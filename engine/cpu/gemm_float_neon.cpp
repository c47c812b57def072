// NEON tiles for float weights (F32, F16 via fcvtl, BF16 via a 16-bit shift) against f32
// activations; the AVX2 ones are in gemm_float.cpp. Each group of 8 weights is converted once
// and used for T tokens; each x vector is used for R rows. A tail of n_in % 8 values is summed
// in scalar code.
#include "core/fp16.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"

namespace akvq::cpu {

#ifdef AKVQ_NEON
namespace {

// load: 8 weights -> two f32x4 (values 0-3, 4-7).
struct LF32 {
  using Elem = float;
  static inline void load(const float* p, float32x4_t& a, float32x4_t& b) {
    a = vld1q_f32(p);
    b = vld1q_f32(p + 4);
  }
  static inline float scalar(float v) { return v; }
};
struct LF16 {
  using Elem = uint16_t;
  static inline void load(const uint16_t* p, float32x4_t& a, float32x4_t& b) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    a = vcvt_f32_f16(vget_low_f16(h));
    b = vcvt_high_f32_f16(h);
  }
  static inline float scalar(uint16_t v) { return fp16_to_f32(v); }
};
struct LBF16 {
  using Elem = uint16_t;
  static inline void load(const uint16_t* p, float32x4_t& a, float32x4_t& b) {
    const uint16x8_t v = vld1q_u16(p);
    a = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16));
    b = vreinterpretq_f32_u32(vshll_high_n_u16(v, 16));
  }
  static inline float scalar(uint16_t v) { return bf16_to_f32(v); }
};

template <class L, int R, int T>
void tile(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  using E = typename L::Elem;
  const E* wr[R];
  const float* xr[T];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const E*>(w + r * w_stride);
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const float*>(x.data + (t0 + t) * x.stride);
  float32x4_t acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
  }
  int64_t i = 0;
  for (; i + 8 <= n_in; i += 8) {
    float32x4_t wa[R], wb[R];
    for (int r = 0; r < R; ++r) L::load(wr[r] + i, wa[r], wb[r]);
    for (int t = 0; t < T; ++t) {
      const float32x4_t xa = vld1q_f32(xr[t] + i), xb = vld1q_f32(xr[t] + i + 4);
      for (int r = 0; r < R; ++r) acc[r][t] = vfmaq_f32(vfmaq_f32(acc[r][t], wa[r], xa), wb[r], xb);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = vaddvq_f32(acc[r][t]);
      for (int64_t j = i; j < n_in; ++j) s += L::scalar(wr[r][j]) * xr[t][j];
      y[t * ldy + r] = s;
    }
  }
}

template <class L>
TileKernels make_kernels() {
  TileKernels k;
  k.fn[0][0] = tile<L, 1, 1>;
  k.fn[1][0] = tile<L, 2, 1>;
  k.fn[2][0] = tile<L, 3, 1>;
  k.fn[3][0] = tile<L, 4, 1>;
  k.fn[0][1] = tile<L, 1, 2>;
  k.fn[1][1] = tile<L, 2, 2>;
  k.fn[2][1] = tile<L, 3, 2>;
  k.fn[3][1] = tile<L, 4, 2>;
  k.pref_r1 = 4;
  k.pref_r = 4;
  k.pref_t = 2;
  return k;
}

}  // namespace

const TileKernels* simd_kernels_float(DType t) {
  static const TileKernels f32 = make_kernels<LF32>();
  static const TileKernels f16 = make_kernels<LF16>();
  static const TileKernels bf16 = make_kernels<LBF16>();
  switch (t) {
    case DType::F32: return &f32;
    case DType::F16: return &f16;
    case DType::BF16: return &bf16;
    default: return nullptr;
  }
}

#endif  // AKVQ_NEON

}  // namespace akvq::cpu
