// NEON tiles for the K-quants (Q4_K, Q6_K) against ActQ16K activations (int16, 256-value
// super-blocks); the AVX2 ones are in qgemm_kquant.cpp and the tile loop over super-blocks is
// shared (qgemm_kquant_tiles.h), this file holds the intrinsics. Each row's super-block is
// unpacked into 256 int16 weights with the sub-block scales folded in (Q4_K: q * sc <= 15 * 63;
// Q6_K: (q - 32) * sc, |.| <= 32 * 128) and T tokens are multiplied with it by widening
// multiply-accumulates into two int32x4 accumulators (low / high halves of each 8-lane vector).
// Integer bounds (|x| <= 32767): Q4_K: 32 vectors per super-block -> 32 products per lane,
// <= 32 * 945 * 32767 < 2^30. Q6_K: summed per half super-block -> 16 products per lane,
// <= 16 * 4096 * 32767 = 2147418112 < 2^31 - 1; every accumulator is converted to f32 on its own.
#include "cpu/qgemm.h"
#include "cpu/qgemm_kquant_tiles.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_NEON
namespace {

using kquant::Unpacked;
using ops::ActQ16K;

inline int16x8_t widen_lo(uint8x16_t v) {
  return vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v)));
}
inline int16x8_t widen_hi(uint8x16_t v) {
  return vreinterpretq_s16_u16(vmovl_high_u8(v));
}

struct KQ4_K : kquant::Q4_K {
  static inline void unpack(const Block* b, Unpacked& u) {
    int sc[8];
    for (int j = 0; j < 8; ++j) ops::q4k_scale_min(b->scales, j, sc[j], u.mn[j]);
    const uint8x16_t m4 = vdupq_n_u8(15);
    for (int k = 0; k < 4; ++k) {
      const uint8_t* q = b->qs + 32 * k;
      const uint8x16_t v0 = vld1q_u8(q), v1 = vld1q_u8(q + 16);
      const int16_t s0 = static_cast<int16_t>(sc[2 * k]), s1 = static_cast<int16_t>(sc[2 * k + 1]);
      int16_t* o = u.wq + 64 * k;
      const uint8x16_t l0 = vandq_u8(v0, m4), l1 = vandq_u8(v1, m4);
      const uint8x16_t h0 = vshrq_n_u8(v0, 4), h1 = vshrq_n_u8(v1, 4);
      vst1q_s16(o + 0, vmulq_n_s16(widen_lo(l0), s0));
      vst1q_s16(o + 8, vmulq_n_s16(widen_hi(l0), s0));
      vst1q_s16(o + 16, vmulq_n_s16(widen_lo(l1), s0));
      vst1q_s16(o + 24, vmulq_n_s16(widen_hi(l1), s0));
      vst1q_s16(o + 32, vmulq_n_s16(widen_lo(h0), s1));
      vst1q_s16(o + 40, vmulq_n_s16(widen_hi(h0), s1));
      vst1q_s16(o + 48, vmulq_n_s16(widen_lo(h1), s1));
      vst1q_s16(o + 56, vmulq_n_s16(widen_hi(h1), s1));
    }
    u.d = f16_to_f32_neon(b->d);
    u.dmin = f16_to_f32_neon(b->dmin);
  }
  // the min term -dmin * dx * sum_j mn_j * sums_j (|sum| <= 8 * 63 * 32 * 32767 < 2^31)
  static inline float offset(const Unpacked& u, const ActQ16K* x) {
    const int32x4_t s = vaddq_s32(vmulq_s32(vld1q_s32(u.mn), vld1q_s32(x->sums)),
                                  vmulq_s32(vld1q_s32(u.mn + 4), vld1q_s32(x->sums + 4)));
    return -u.dmin * x->d * static_cast<float>(vaddvq_s32(s));
  }
};

struct KQ6_K : kquant::Q6_K {
  static inline void unpack(const Block* b, Unpacked& u) {
    const uint8x16_t m4 = vdupq_n_u8(15), m3 = vdupq_n_u8(3);
    const int16x8_t c32 = vdupq_n_s16(32);
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < 2; ++j) {  // l = 16j .. 16j + 15 of each 32-value run
        const uint8x16_t A = vld1q_u8(b->ql + 64 * h + 16 * j);
        const uint8x16_t B = vld1q_u8(b->ql + 64 * h + 32 + 16 * j);
        const uint8x16_t Q = vld1q_u8(b->qh + 32 * h + 16 * j);
        uint8x16_t q[4];  // values 128h + 32k + 16j + (0..15)
        q[0] = vorrq_u8(vandq_u8(A, m4), vshlq_n_u8(vandq_u8(Q, m3), 4));
        q[1] = vorrq_u8(vandq_u8(B, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(Q, 2), m3), 4));
        q[2] = vorrq_u8(vshrq_n_u8(A, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(Q, 4), m3), 4));
        q[3] = vorrq_u8(vshrq_n_u8(B, 4), vshlq_n_u8(vshrq_n_u8(Q, 6), 4));
        for (int k = 0; k < 4; ++k) {
          const int base = 128 * h + 32 * k + 16 * j;
          const int16_t sc = b->scales[base / 16];
          vst1q_s16(u.wq + base, vmulq_n_s16(vsubq_s16(widen_lo(q[k]), c32), sc));
          vst1q_s16(u.wq + base + 8, vmulq_n_s16(vsubq_s16(widen_hi(q[k]), c32), sc));
        }
      }
    }
    u.d = f16_to_f32_neon(b->d);
    u.dmin = 0.0f;
  }
  static inline float offset(const Unpacked&, const ActQ16K*) { return 0.0f; }
};

struct Neon {
  using Acc = float32x4_t;  // [4] f32 partial sums of one row x one token
  static inline Acc zero() { return vdupq_n_f32(0.0f); }
  static inline float hsum(Acc a) { return vaddvq_f32(a); }
  // acc += d * dx * (unpacked row . x) over one super-block.
  template <class K>
  static inline void dot(const Unpacked& u, const ActQ16K* x, Acc& acc) {
    constexpr int kPer = 32 / K::kHalves;  // 8-lane vectors per int32 accumulation
    float32x4_t f = vdupq_n_f32(0.0f);
    for (int h = 0; h < K::kHalves; ++h) {
      int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
      for (int i = h * kPer; i < (h + 1) * kPer; ++i) {
        const int16x8_t w = vld1q_s16(u.wq + 8 * i);
        const int16x8_t v = vld1q_s16(x->qs + 8 * i);
        s0 = vmlal_s16(s0, vget_low_s16(w), vget_low_s16(v));
        s1 = vmlal_high_s16(s1, w, v);
      }
      f = vaddq_f32(f, vaddq_f32(vcvtq_f32_s32(s0), vcvtq_f32_s32(s1)));
    }
    acc = vfmaq_n_f32(acc, f, u.d * x->d);
  }
};

}  // namespace

const TileKernels* simd_kernels_kquant(DType t) {
  return find_tiles<kquant::Tiles, Neon, KQ4_K, KQ6_K>(t);
}

#endif  // AKVQ_NEON

}  // namespace akvq::cpu
