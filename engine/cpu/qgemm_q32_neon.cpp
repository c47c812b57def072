// NEON tiles for the 32-value block types Q4_0, Q4_1 and Q8_0 against Q16 activation rows
// (int16 per block of 32, ops/qblocks.h); the AVX2 ones are in qgemm_q32.cpp, the block facts, the
// tile operands and the table are shared (qgemm_q32_tiles.h). A weight block is unpacked once into
// four registers of 8 int16 lanes (values 0-7, 8-15, 16-23, 24-31) and multiplied with the
// activations by widening multiply-accumulates (int16 x int16 -> int32).
// Integer bounds per block: |w| <= 15 (Q4 nibbles) or 128 (Q8_0), |x| <= 32767; each int32 lane
// sums 8 products, at most 8 * 128 * 32767 < 2^25. Each block's integer sum is converted to f32
// and scaled by d_w * d_x; the offset term of Q4_0 / Q4_1 (m * d_x * sum(q_x) = m * s) uses the
// exact per-block sums s of the activation rows, as in the AVX2 tiles.
// The f32 accumulators hold one lane per row (one token) or per token (one row each).
#include <cstring>

#include "cpu/prefetch.h"
#include "cpu/qgemm.h"
#include "cpu/qgemm_q32_tiles.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_NEON
namespace {

constexpr int kPrefetchAhead = 2048;  // bytes ahead in each weight row (decode streams the weights)

// Weight types. unpack: block -> w[0] values 0-7, w[1] 8-15, w[2] 16-23, w[3] 24-31 as int16 lanes.
template <class B>
struct KQ4 : B {  // Q4_0, Q4_1: value j in the low nibble of byte j, j + 16 in the high one
  static inline void unpack(const uint8_t* blk, int16x8_t* w) {
    const uint8x16_t v = vld1q_u8(blk + B::kQsOff);
    const uint8x16_t lo = vandq_u8(v, vdupq_n_u8(15)), hi = vshrq_n_u8(v, 4);
    w[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(lo)));
    w[1] = vreinterpretq_s16_u16(vmovl_high_u8(lo));
    w[2] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(hi)));
    w[3] = vreinterpretq_s16_u16(vmovl_high_u8(hi));
  }
};
using KQ4_0 = KQ4<q32::Q4_0>;
using KQ4_1 = KQ4<q32::Q4_1>;

struct KQ8_0 : q32::Q8_0 {
  static inline void unpack(const uint8_t* blk, int16x8_t* w) {
    const int8x16_t a = vld1q_s8(reinterpret_cast<const int8_t*>(blk + kQsOff));
    const int8x16_t b = vld1q_s8(reinterpret_cast<const int8_t*>(blk + kQsOff + 16));
    w[0] = vmovl_s8(vget_low_s8(a));
    w[1] = vmovl_high_s8(a);
    w[2] = vmovl_s8(vget_low_s8(b));
    w[3] = vmovl_high_s8(b);
  }
};

// The fp16 at byte offset off of R rows -> f32 lanes 0..R-1 (lanes >= R are 0).
template <int R>
inline float32x4_t row_scales(const uint8_t* const* wr, int64_t off) {
  uint16_t v[4] = {0, 0, 0, 0};
  for (int r = 0; r < R; ++r) std::memcpy(&v[r], wr[r] + off, 2);
  return load_f16x4(v);
}

// The offset multipliers of R rows (Q4_0: d itself, already loaded as A; Q4_1: m).
template <class K, int R>
inline float32x4_t min_scales(const uint8_t* const* wr, int64_t off, float32x4_t A) {
  return K::kMinOff == 0 ? A : row_scales<R>(wr, off + (K::kMinOff > 0 ? K::kMinOff : 0));
}

// Integer dot of one unpacked weight block with 32 int16 activations: 4 int32 lanes.
inline int32x4_t block_dot(const int16x8_t* w, const int16_t* xq) {
  int32x4_t s = vdupq_n_s32(0);
  for (int i = 0; i < 4; ++i) {
    const int16x8_t x = vld1q_s16(xq + 8 * i);
    s = vmlal_s16(s, vget_low_s16(w[i]), vget_low_s16(x));
    s = vmlal_high_s16(s, w[i], x);
  }
  return s;
}

// p[0..3] (4 int32 lanes each) -> lane i = sum of the lanes of p[i].
inline int32x4_t reduce4(int32x4_t p0, int32x4_t p1, int32x4_t p2, int32x4_t p3) {
  return vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));
}

// Decode tile (one token, R rows): the activation block is reused for every row; the R integer
// dots are reduced into one register (lanes = rows), converted once and scaled by d_w * d_x.
// This ISA's part of q32::Tiles: t1 (one token), multi (2..4 tokens), defined below.
struct Neon {
  template <class K, int R>
  static void t1(const q32::Operands<R, 1>& o, float* y);
  template <class K, int R, int T>
  static void multi(const q32::Operands<R, T>& o, float* y, int64_t ldy);
};

template <class K, int R>
void Neon::t1(const q32::Operands<R, 1>& o, float* y) {
  float32x4_t acc = vdupq_n_f32(0.0f), accm = vdupq_n_f32(0.0f);  // lanes = rows
  for (int64_t b = 0; b < o.nb; ++b) {
    const int64_t off = b * K::kBytes;
    if ((b & 1) == 0) {
      for (int r = 0; r < R; ++r) prefetch_line(o.wr[r] + off + kPrefetchAhead);
    }
    int32x4_t p[4];
    for (int r = 0; r < 4; ++r) {
      if (r < R) {
        int16x8_t wv[4];
        K::unpack(o.wr[r] + off, wv);
        p[r] = block_dot(wv, o.xq[0] + b * ops::kQK);
      } else {
        p[r] = vdupq_n_s32(0);
      }
    }
    const float32x4_t A = row_scales<R>(o.wr, off);
    acc = vfmaq_f32(acc, vcvtq_f32_s32(reduce4(p[0], p[1], p[2], p[3])), vmulq_n_f32(A, o.xd[b]));
    if (K::kMinOff >= 0) accm = vfmaq_n_f32(accm, min_scales<K, R>(o.wr, off, A), o.xs[b]);
  }
  float a[4], m[4];
  vst1q_f32(a, acc);
  vst1q_f32(m, accm);
  for (int r = 0; r < R; ++r) y[r] = a[r] + K::kMinMul * m[r];
}

// Several tokens (2 <= T <= 4), R rows. Per block, each row's weights are unpacked once for the
// T tokens; the T integer dots of a row are reduced to one register (lanes = tokens) and scaled
// with the transposed activation scales d_tr / s_tr: one accumulator per row.
template <class K, int R, int T>
void Neon::multi(const q32::Operands<R, T>& o, float* y, int64_t ldy) {
  static_assert(T >= 2 && T <= 4, "multi: 2..4 tokens");
  float32x4_t acc[R], accm[R];  // lanes = tokens
  for (int r = 0; r < R; ++r) acc[r] = accm[r] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < o.nb; ++b) {
    const int64_t off = b * K::kBytes;
    float dw[4], mw[4];
    const float32x4_t A = row_scales<R>(o.wr, off);
    vst1q_f32(dw, A);
    if (K::kMinOff >= 0) vst1q_f32(mw, min_scales<K, R>(o.wr, off, A));
    const float32x4_t DX = vld1q_f32(o.d_tr + b * o.tr_stride);  // lanes >= T: padding, unused
    for (int r = 0; r < R; ++r) {
      int16x8_t wv[4];
      K::unpack(o.wr[r] + off, wv);
      int32x4_t q[4];
      for (int t = 0; t < 4; ++t) q[t] = t < T ? block_dot(wv, o.xq[t] + b * ops::kQK) : vdupq_n_s32(0);
      acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(reduce4(q[0], q[1], q[2], q[3])), vmulq_n_f32(DX, dw[r]));
      if (K::kMinOff >= 0) accm[r] = vfmaq_n_f32(accm[r], vld1q_f32(o.s_tr + b * o.tr_stride), mw[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float a[4], m[4];
    vst1q_f32(a, acc[r]);
    vst1q_f32(m, accm[r]);
    for (int t = 0; t < T; ++t) y[t * ldy + r] = a[t] + K::kMinMul * m[t];
  }
}

}  // namespace

const TileKernels* simd_kernels_q32(DType t) {
  return find_tiles<q32::Tiles, Neon, KQ4_0, KQ4_1, KQ8_0>(t);
}

#endif  // AKVQ_NEON

}  // namespace akvq::cpu
