// NEON tiles for float weights (F32, F16 via fcvtl, BF16 via a 16-bit shift) against f32
// activations; the AVX2 ones are in gemm_float.cpp. Each group of 8 weights is converted once
// (two f32x4) and used for T tokens; each x group is used for R rows. The tile loop, with its
// scalar tail of n_in % 8 values, is shared (gemm_float_tiles.h); this file holds the loads and
// the vector traits.
#include "cpu/gemm_float_tiles.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"

namespace akvq::cpu {

#ifdef AKVQ_NEON
namespace {

struct F32x8 {
  float32x4_t a, b;  // values 0-3, 4-7
};

struct Neon {
  using Acc = float32x4_t;  // [4] f32 partial sums of one row x one token
  using G8 = F32x8;
  static inline Acc zero() { return vdupq_n_f32(0.0f); }
  static inline float hsum(Acc a) { return vaddvq_f32(a); }
  static inline G8 load_x(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
  // acc + w.a * x.a, then + w.b * x.b
  static inline Acc fma(const G8& w, const G8& x, Acc acc) { return vfmaq_f32(vfmaq_f32(acc, w.a, x.a), w.b, x.b); }
};

struct LF32 : gemmf::F32 {
  static inline F32x8 load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
};
struct LF16 : gemmf::F16 {
  static inline F32x8 load(const uint16_t* p) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    return {vcvt_f32_f16(vget_low_f16(h)), vcvt_high_f32_f16(h)};
  }
};
struct LBF16 : gemmf::BF16 {
  static inline F32x8 load(const uint16_t* p) {
    const uint16x8_t v = vld1q_u16(p);
    return {vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)), vreinterpretq_f32_u32(vshll_high_n_u16(v, 16))};
  }
};

}  // namespace

const TileKernels* simd_kernels_float(DType t) {
  return find_tiles<gemmf::Tiles, Neon, LF32, LF16, LBF16>(t);
}

#endif  // AKVQ_NEON

}  // namespace akvq::cpu
