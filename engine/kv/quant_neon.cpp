// NEON attention kernels over packed KV rows (layout in quant.h) for 2- and 4-bit codes, uniform or
// Gaussian levels; the other widths stay on the scalar references (available() says which). The
// AVX2 kernels of the same contracts are in quant_avx2.cpp.
//
// Codes are expanded 16 at a time (an 8-value step covers groups of an odd multiple of 8) into four
// float32x4 vectors:
//   uniform:  the code word (4 bytes at 2 bits, two words at 4 bits) is broadcast to all lanes; an
//             AND with a per-lane mask keeps lane i's code in place (c·4^i at 2 bits, c·16^i at 4
//             bits, times 2^8k / 2^16k for the later bytes) and ucvtf with fraction bits removes the
//             byte position for free. The kernels fold the remaining lane scale 4^-i / 16^-i into the
//             group scale (scores) or into the accumulators (accumulate); powers of two are exact, so
//             the results equal the unscaled arithmetic bit for bit.
//   Gaussian: a tbl lookup of the float levels' bytes (one register of 4 levels at 2 bits, four
//             registers of 16 at 4 bits); see the comment above Gauss2 for the byte indices (3 vector
//             ops per 4 values with the load at 2 bits, 2.75 at 4 bits, against 2.25 / 2.5 for
//             uniform levels).
// A kernel reads q (scores) and acc (accumulate) in the order the expander produces (X::load16 /
// X::store16: plain loads, or the de-interleaving vld4q / vld2q that match the Gaussian expanders).
// Scores walk R rows at once against NQ queries (one accumulator per row and query, reduced per
// group with the group scale, and across lanes at the end); accumulate keeps a tile of up to 32
// output channels per weight vector in registers while it walks the rows, and adds the per-group
// offset sums at the end. A row's result never depends on how many rows or queries share a pass.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/simd.h"
#include "kv/quant.h"

namespace akvq::kv::simd {

#if defined(AKVQ_NEON) && !defined(AKVQ_AVX2)

namespace {

constexpr int kMaxGroups = 64;     // groups per row served by accumulate (more: the reference)
constexpr int64_t kRowBlock = 64;  // rows per block when a row spans several channel tiles

// (scale, offset) of group g of a row, from its two fp16 header fields.
inline float32x2_t header(const uint8_t* row, int g) {
  uint32_t w;
  std::memcpy(&w, row + 4 * static_cast<size_t>(g), 4);
  return vget_low_f32(vcvt_f32_f16(vreinterpret_f16_u32(vdup_n_u32(w))));
}

inline uint32x4_t broadcast32(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return vdupq_n_u32(w);
}
inline uint32x4_t broadcast16(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  return vdupq_n_u32(w);
}

inline uint32x4_t lanes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  const uint32_t v[4] = {a, b, c, d};
  return vld1q_u32(v);
}
inline int32x4_t lanes_s(int32_t a, int32_t b, int32_t c, int32_t d) {
  const int32_t v[4] = {a, b, c, d};
  return vld1q_s32(v);
}
inline float32x4_t lanes_f(float a, float b, float c, float d) {
  const float v[4] = {a, b, c, d};
  return vld1q_f32(v);
}

// Expanders: x16(p, f) -> f[0..3] = values 0-3, 4-7, 8-11, 12-15 of the 2·B bytes at p; x8(p, f)
// -> f[0..1] = values 0-7 of the B bytes at p. kScaled: lane i of every vector holds the level
// times 1 / lane_scale()[i] (the kernels undo it exactly).

struct Uniform2 {
  static constexpr int kBits = 2;
  static constexpr bool kScaled = true;
  uint32x4_t m0, m1, m2, m3;
  explicit Uniform2(const float*)
      : m0(lanes(3u, 3u << 2, 3u << 4, 3u << 6)),
        m1(vshlq_n_u32(m0, 8)),
        m2(vshlq_n_u32(m0, 16)),
        m3(vshlq_n_u32(m0, 24)) {}
  static float32x4_t lane_scale() { return lanes_f(1.0f, 0x1p-2f, 0x1p-4f, 0x1p-6f); }
  static float32x4_t lane_unscale() { return lanes_f(1.0f, 0x1p2f, 0x1p4f, 0x1p6f); }
  static void load16(const float* p, float32x4_t* v) {
    for (int m = 0; m < 4; ++m) v[m] = vld1q_f32(p + 4 * m);
  }
  static void store16(float* p, const float32x4_t* v) {
    for (int m = 0; m < 4; ++m) vst1q_f32(p + 4 * m, v[m]);
  }
  inline void x16(const uint8_t* p, float32x4_t* f) const {
    const uint32x4_t v = broadcast32(p);
    f[0] = vcvtq_f32_u32(vandq_u32(v, m0));
    f[1] = vcvtq_n_f32_u32(vandq_u32(v, m1), 8);
    f[2] = vcvtq_n_f32_u32(vandq_u32(v, m2), 16);
    f[3] = vcvtq_n_f32_u32(vandq_u32(v, m3), 24);
  }
  inline void x8(const uint8_t* p, float32x4_t* f) const {
    const uint32x4_t v = broadcast16(p);
    f[0] = vcvtq_f32_u32(vandq_u32(v, m0));
    f[1] = vcvtq_n_f32_u32(vandq_u32(v, m1), 8);
  }
};

struct Uniform4 {
  static constexpr int kBits = 4;
  static constexpr bool kScaled = true;
  uint32x4_t m0, m1;
  explicit Uniform4(const float*) : m0(lanes(15u, 15u << 4, 15u << 8, 15u << 12)), m1(vshlq_n_u32(m0, 16)) {}
  static float32x4_t lane_scale() { return lanes_f(1.0f, 0x1p-4f, 0x1p-8f, 0x1p-12f); }
  static float32x4_t lane_unscale() { return lanes_f(1.0f, 0x1p4f, 0x1p8f, 0x1p12f); }
  static void load16(const float* p, float32x4_t* v) {
    for (int m = 0; m < 4; ++m) v[m] = vld1q_f32(p + 4 * m);
  }
  static void store16(float* p, const float32x4_t* v) {
    for (int m = 0; m < 4; ++m) vst1q_f32(p + 4 * m, v[m]);
  }
  inline void x8(const uint8_t* p, float32x4_t* f) const {
    const uint32x4_t v = broadcast32(p);
    f[0] = vcvtq_f32_u32(vandq_u32(v, m0));
    f[1] = vcvtq_n_f32_u32(vandq_u32(v, m1), 16);
  }
  inline void x16(const uint8_t* p, float32x4_t* f) const {
    x8(p, f);
    x8(p + 4, f + 2);
  }
};

// Gaussian levels: tables of the levels' bytes laid out as T[c + K·j] = byte j of L[c] (K = 2^b
// levels), so that the index bytes of a code c are c + K·(0, 1, 2, 3): the code in the low bits,
// a constant in the high ones (one shift-insert, sli or sri). x16 expands 16 codes into the lanes
// of a 4x4 transpose (2 bits: vector v, lane k = value 4k + v) or of a de-interleave (4 bits: even
// and odd values of each 8), which is the order vld4q / vld2q read the matching q or acc values
// in: the byte of every code is broadcast to its lane by one tbl, and each vector of codes then
// needs at most a constant shift before the insert. x8 keeps the natural order: per-lane shifts
// and a mask place the code, one multiply-accumulate spreads it over the lane's bytes and adds the
// byte offsets.

inline uint8x16_t bytes16(const uint8_t (&b)[16]) {
  return vld1q_u8(b);
}

// Byte indices c + K·(0, 1, 2, 3) of the code in the low bits of each lane (masked already).
template <int K>
inline uint8x16_t spread(uint32x4_t c) {
  return vreinterpretq_u8_u32(
      vmlaq_u32(vdupq_n_u32(0x01000000u * 3 * K + 0x10000u * 2 * K + 0x100u * K), c, vdupq_n_u32(0x01010101u)));
}

struct Gauss2 {
  static constexpr int kBits = 2;
  static constexpr bool kScaled = false;
  uint8x16_t table;  // T[c + 4j] = byte j of L[c]
  uint8x16_t rep;    // byte k of the word -> the 4 bytes of lane k
  uint8x16_t j1;     // 0, 1, 2, 3 in every lane
  uint8x16_t j4;     // 0, 4, 8, 12 in every lane
  int32x4_t s0, s1;  // x8: per-lane shifts of values 0-3 / 4-7 to bits [0, 2)
  explicit Gauss2(const float* levels) {
    uint8_t lv[16], tb[16];
    std::memcpy(lv, levels, 16);
    for (int c = 0; c < 4; ++c) {
      for (int j = 0; j < 4; ++j) tb[c + 4 * j] = lv[4 * c + j];
    }
    const uint8_t r[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    const uint8_t b1[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    table = bytes16(tb), rep = bytes16(r), j1 = bytes16(b1), j4 = vshlq_n_u8(j1, 2);
    s0 = lanes_s(0, -2, -4, -6);
    s1 = vsubq_s32(s0, vdupq_n_s32(8));
  }
  static float32x4_t lane_scale() { return vdupq_n_f32(1.0f); }
  static float32x4_t lane_unscale() { return vdupq_n_f32(1.0f); }
  static void load16(const float* p, float32x4_t* v) {
    const float32x4x4_t t = vld4q_f32(p);
    v[0] = t.val[0], v[1] = t.val[1], v[2] = t.val[2], v[3] = t.val[3];
  }
  static void store16(float* p, const float32x4_t* v) { vst4q_f32(p, float32x4x4_t{{v[0], v[1], v[2], v[3]}}); }
  // Byte k of the codes in all 4 bytes of lane k (one tbl), then per vector: the code in bits [0, 2)
  // with 4j above it: sli keeps the code bits of (d >> 2i) and inserts j·4, sri inserts d >> 6.
  inline void x16(const uint8_t* p, float32x4_t* f) const {
    const uint8x16_t d = vqtbl1q_u8(vreinterpretq_u8_u32(broadcast32(p)), rep);
    f[3] = vreinterpretq_f32_u8(vqtbl1q_u8(table, vsriq_n_u8(j4, d, 6)));
    f[2] = vreinterpretq_f32_u8(vqtbl1q_u8(table, vsliq_n_u8(vshrq_n_u8(d, 4), j1, 2)));
    f[1] = vreinterpretq_f32_u8(vqtbl1q_u8(table, vsliq_n_u8(vshrq_n_u8(d, 2), j1, 2)));
    f[0] = vreinterpretq_f32_u8(vqtbl1q_u8(table, vsliq_n_u8(d, j1, 2)));
  }
  inline float32x4_t level(uint32x4_t v, int32x4_t s) const {
    return vreinterpretq_f32_u8(vqtbl1q_u8(table, spread<4>(vandq_u32(vshlq_u32(v, s), vdupq_n_u32(3)))));
  }
  inline void x8(const uint8_t* p, float32x4_t* f) const {
    const uint32x4_t v = broadcast16(p);
    f[0] = level(v, s0);
    f[1] = level(v, s1);
  }
};

struct Gauss4 {
  static constexpr int kBits = 4;
  static constexpr bool kScaled = false;
  uint8x16x4_t t;         // T[c + 16j] = byte j of L[c]
  uint8x16_t rep0, rep1;  // bytes 0-3 / 4-7 of the codes -> the 4 bytes of lanes 0-3
  uint8x16_t j1;          // 0, 1, 2, 3 in every lane
  uint8x16_t j16;         // 0, 16, 32, 48 in every lane
  int32x4_t s0, s1;       // x8: per-lane shifts of values 0-3 / 4-7 to bits [0, 4)
  explicit Gauss4(const float* levels) {
    uint8_t lv[64], tb[64];
    std::memcpy(lv, levels, 64);
    for (int c = 0; c < 16; ++c) {
      for (int j = 0; j < 4; ++j) tb[c + 16 * j] = lv[4 * c + j];
    }
    t = vld1q_u8_x4(tb);
    const uint8_t r0[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    const uint8_t b1[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    rep0 = bytes16(r0), rep1 = vaddq_u8(rep0, vdupq_n_u8(4)), j1 = bytes16(b1), j16 = vshlq_n_u8(j1, 4);
    s0 = lanes_s(0, -4, -8, -12);
    s1 = vsubq_s32(s0, vdupq_n_s32(16));
  }
  static float32x4_t lane_scale() { return vdupq_n_f32(1.0f); }
  static float32x4_t lane_unscale() { return vdupq_n_f32(1.0f); }
  static void load16(const float* p, float32x4_t* v) {
    const float32x4x2_t a = vld2q_f32(p), b = vld2q_f32(p + 8);
    v[0] = a.val[0], v[1] = a.val[1], v[2] = b.val[0], v[3] = b.val[1];
  }
  static void store16(float* p, const float32x4_t* v) {
    vst2q_f32(p, float32x4x2_t{{v[0], v[1]}});
    vst2q_f32(p + 8, float32x4x2_t{{v[2], v[3]}});
  }
  // Bytes 0-3 / 4-7 of the codes in all 4 bytes of lanes 0-3 (two tbl), then per vector: sli keeps
  // the low nibble and inserts 16j above it, sri inserts the high nibble below 16j.
  inline void x16(const uint8_t* p, float32x4_t* f) const {
    uint64_t w;
    std::memcpy(&w, p, 8);
    const uint8x16_t wv = vreinterpretq_u8_u64(vdupq_n_u64(w));
    const uint8x16_t d0 = vqtbl1q_u8(wv, rep0), d1 = vqtbl1q_u8(wv, rep1);
    f[1] = vreinterpretq_f32_u8(vqtbl4q_u8(t, vsriq_n_u8(j16, d0, 4)));
    f[0] = vreinterpretq_f32_u8(vqtbl4q_u8(t, vsliq_n_u8(d0, j1, 4)));
    f[3] = vreinterpretq_f32_u8(vqtbl4q_u8(t, vsriq_n_u8(j16, d1, 4)));
    f[2] = vreinterpretq_f32_u8(vqtbl4q_u8(t, vsliq_n_u8(d1, j1, 4)));
  }
  inline float32x4_t level(uint32x4_t v, int32x4_t s) const {
    return vreinterpretq_f32_u8(vqtbl4q_u8(t, spread<16>(vandq_u32(vshlq_u32(v, s), vdupq_n_u32(15)))));
  }
  inline void x8(const uint8_t* p, float32x4_t* f) const {
    const uint32x4_t v = broadcast32(p);
    f[0] = level(v, s0);
    f[1] = level(v, s1);
  }
};

// ---------------------------------------------------------------- scores

// Scores of R consecutive rows against NQ queries (query j at q + j·qst, group sums at qsum +
// j·qsst): r[u·NQ + j] = Σ_g scale_g · (lane-scaled q_j,g · codes) as 4 lanes, off[u·NQ + j] =
// Σ_g offset_g · qsum_j,g. G16: group / 16 when known at compile time (0: group at run time).
template <class X, int G16, int R, int NQ>
inline void rows_dot(const X& x, const uint8_t* row0, size_t stride, int ng, int group, const float* q, size_t qst,
                     const float* qsum, size_t qsst, float32x4_t* r, float* off) {
  constexpr int B = X::kBits;
  const int n16 = G16 ? G16 : group / 16;
  const bool tail8 = G16 == 0 && group % 16 != 0;
  const size_t code0 = 4 * static_cast<size_t>(ng);
  const float32x4_t ls = X::lane_scale();
#pragma GCC unroll 16
  for (int u = 0; u < R * NQ; ++u) r[u] = vdupq_n_f32(0.0f), off[u] = 0.0f;
  for (int g = 0; g < ng; ++g) {
    float32x4_t a[R * NQ];
#pragma GCC unroll 16
    for (int u = 0; u < R * NQ; ++u) a[u] = vdupq_n_f32(0.0f);
    const size_t cg = code0 + static_cast<size_t>(g) * group * B / 8;
    const float* qg = q + static_cast<size_t>(g) * group;
    for (int k = 0; k < n16; ++k) {
      float32x4_t qv[NQ][4];
#pragma GCC unroll 16
      for (int j = 0; j < NQ; ++j) {
        X::load16(qg + j * qst + 16 * k, qv[j]);
      }
#pragma GCC unroll 16
      for (int u = 0; u < R; ++u) {
        float32x4_t f[4];
        x.x16(row0 + u * stride + cg + 2 * B * k, f);
#pragma GCC unroll 16
        for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 16
          for (int m = 0; m < 4; ++m) a[u * NQ + j] = vfmaq_f32(a[u * NQ + j], f[m], qv[j][m]);
        }
      }
    }
    if (tail8) {
      const int i0 = 16 * n16;
#pragma GCC unroll 16
      for (int u = 0; u < R; ++u) {
        float32x4_t f[2];
        x.x8(row0 + u * stride + cg + i0 * B / 8, f);
#pragma GCC unroll 16
        for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 16
          for (int m = 0; m < 2; ++m)
            a[u * NQ + j] = vfmaq_f32(a[u * NQ + j], f[m], vld1q_f32(qg + j * qst + i0 + 4 * m));
        }
      }
    }
#pragma GCC unroll 16
    for (int u = 0; u < R; ++u) {
      const float32x2_t h = header(row0 + u * stride, g);
      const float32x4_t sc = vmulq_n_f32(ls, vget_lane_f32(h, 0));  // exact: powers of two
      const float of = vget_lane_f32(h, 1);
#pragma GCC unroll 16
      for (int j = 0; j < NQ; ++j) {
        r[u * NQ + j] = vfmaq_f32(r[u * NQ + j], a[u * NQ + j], sc);
        off[u * NQ + j] = std::fma(of, qsum[j * qsst + g], off[u * NQ + j]);
      }
    }
  }
}

// Rows per pass for NQ queries (R·NQ accumulators and partial sums, 4·NQ query vectors).
template <int NQ>
constexpr int rows_per_pass() {
  return NQ == 1 ? 4 : 2;
}

template <class X, int G16, int NQ>
void scores_k(const X& x, int group, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
              const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  const int ng = n / group;
  constexpr int R = rows_per_pass<NQ>();
  int64_t t = 0;
  for (; t + R <= n_rows; t += R) {
    float off[R * NQ];
    float32x4_t v[R * NQ];
    rows_dot<X, G16, R, NQ>(x, rows + t * stride, stride, ng, group, q, qst, qsum, qsst, v, off);
#pragma GCC unroll 16
    for (int u = 0; u < R; ++u) {
#pragma GCC unroll 16
      for (int j = 0; j < NQ; ++j) out[j * ost + t + u] = vaddvq_f32(v[u * NQ + j]) + off[u * NQ + j];
    }
  }
  for (; t < n_rows; ++t) {
    float off[NQ];
    float32x4_t v[NQ];
    rows_dot<X, G16, 1, NQ>(x, rows + t * stride, stride, ng, group, q, qst, qsum, qsst, v, off);
#pragma GCC unroll 16
    for (int j = 0; j < NQ; ++j) out[j * ost + t] = vaddvq_f32(v[j]) + off[j];
  }
}

template <class X, int NQ>
void scores_g(const X& x, int group, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
              const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  switch (group) {
    case 32: return scores_k<X, 2, NQ>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 64: return scores_k<X, 4, NQ>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 128: return scores_k<X, 8, NQ>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    default: return scores_k<X, 0, NQ>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
  }
}

template <class X>
void scores_x(int nq, int group, const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
              const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  const X x(levels);
  switch (nq) {
    case 1: return scores_g<X, 1>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 2: return scores_g<X, 2>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    case 3: return scores_g<X, 3>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
    default: return scores_g<X, 4>(x, group, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost);
  }
}

// ---------------------------------------------------------------- accumulate

// For NQ weight vectors (p + j·pst) and accumulators (acc + j·ast): the TC channels at acc
// (channels ch0 ... of group g) += Σ_t p_j[t] · scale_{t,g} · L[codes], rows [t0, t1).
template <class X, int TC, int NQ>
void acc_tile(const X& x, const float* p, size_t pst, const uint8_t* rows, size_t stride, int64_t t0, int64_t t1,
              int ng, int g, int ch0, float* acc, size_t ast) {
  constexpr int B = X::kBits;
  constexpr int NV = TC / 4;
  float32x4_t a[NQ][NV];
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 16
    for (int k = 0; k < TC / 16; ++k) X::load16(acc + j * ast + 16 * k, a[j] + 4 * k);
    if constexpr (TC % 16 != 0) {
      a[j][NV - 2] = vld1q_f32(acc + j * ast + TC - 8);
      a[j][NV - 1] = vld1q_f32(acc + j * ast + TC - 4);
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) a[j][v] = vmulq_f32(a[j][v], X::lane_unscale());
  }
  const size_t code_off = 4 * static_cast<size_t>(ng) + static_cast<size_t>(ch0) * B / 8;
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* row = rows + t * stride;
    const float sc = vget_lane_f32(header(row, g), 0);
    float32x4_t w[NQ];
#pragma GCC unroll 16
    for (int j = 0; j < NQ; ++j) w[j] = vdupq_n_f32(p[j * pst + t] * sc);
    const uint8_t* codes = row + code_off;
#pragma GCC unroll 16
    for (int k = 0; k < TC / 16; ++k) {
      float32x4_t f[4];
      x.x16(codes + 2 * B * k, f);
#pragma GCC unroll 16
      for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 16
        for (int m = 0; m < 4; ++m) a[j][4 * k + m] = vfmaq_f32(a[j][4 * k + m], f[m], w[j]);
      }
    }
    if constexpr (TC % 16 != 0) {
      float32x4_t f[2];
      x.x8(codes + (TC / 16) * 2 * B, f);
#pragma GCC unroll 16
      for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 16
        for (int m = 0; m < 2; ++m) a[j][NV - 2 + m] = vfmaq_f32(a[j][NV - 2 + m], f[m], w[j]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) a[j][v] = vmulq_f32(a[j][v], X::lane_scale());
#pragma GCC unroll 16
    for (int k = 0; k < TC / 16; ++k) X::store16(acc + j * ast + 16 * k, a[j] + 4 * k);
    if constexpr (TC % 16 != 0) {
      vst1q_f32(acc + j * ast + TC - 8, a[j][NV - 2]);
      vst1q_f32(acc + j * ast + TC - 4, a[j][NV - 1]);
    }
  }
}

// Widest channel tile for NQ accumulators (NQ·TC/4 registers of the 32; wider tiles spill the
// expanded codes and masks).
template <int NQ>
constexpr int max_tile() {
  return NQ <= 2 ? 32 : 16;
}

template <class X, int NQ>
void accumulate_k(const X& x, int group, const float* p, size_t pst, const uint8_t* rows, size_t stride, int64_t n_rows,
                  int n, float* acc, size_t ast) {
  const int ng = n / group;
  int tc = max_tile<NQ>();
  while (group % tc != 0) tc /= 2;  // the widest tile (32, 16 or 8 channels) dividing the group
  auto tile = [&](int64_t t0, int64_t t1, int g, int ch0) {
    float* a = acc + ch0;
    switch (tc) {
      case 32:
        if constexpr (max_tile<NQ>() >= 32)
          return acc_tile<X, 32, NQ>(x, p, pst, rows, stride, t0, t1, ng, g, ch0, a, ast);
        break;
      case 16: return acc_tile<X, 16, NQ>(x, p, pst, rows, stride, t0, t1, ng, g, ch0, a, ast);
      default: return acc_tile<X, 8, NQ>(x, p, pst, rows, stride, t0, t1, ng, g, ch0, a, ast);
    }
  };
  float osum[NQ][kMaxGroups] = {};
  const int64_t block = (n / tc > 1) ? kRowBlock : n_rows;
  for (int64_t t0 = 0; t0 < n_rows; t0 += block) {
    const int64_t t1 = std::min(n_rows, t0 + block);
    for (int g = 0; g < ng; ++g) {
      for (int c = 0; c < group; c += tc) tile(t0, t1, g, g * group + c);
    }
    for (int64_t t = t0; t < t1; ++t) {
      const uint8_t* row = rows + t * stride;
      for (int g = 0; g < ng; ++g) {
        const float o = vget_lane_f32(header(row, g), 1);
#pragma GCC unroll 16
        for (int j = 0; j < NQ; ++j) osum[j][g] = std::fma(p[j * pst + t], o, osum[j][g]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
    float* aj = acc + j * ast;
    for (int g = 0; g < ng; ++g) {
      const float32x4_t o = vdupq_n_f32(osum[j][g]);
      for (int i = g * group; i < (g + 1) * group; i += 4) vst1q_f32(aj + i, vaddq_f32(vld1q_f32(aj + i), o));
    }
  }
}

template <class X>
void accumulate_x(int nq, int group, const float* levels, const float* p, size_t pst, const uint8_t* rows,
                  size_t stride, int64_t n_rows, int n, float* acc, size_t ast) {
  const X x(levels);
  switch (nq) {
    case 1: return accumulate_k<X, 1>(x, group, p, pst, rows, stride, n_rows, n, acc, ast);
    case 2: return accumulate_k<X, 2>(x, group, p, pst, rows, stride, n_rows, n, acc, ast);
    case 3: return accumulate_k<X, 3>(x, group, p, pst, rows, stride, n_rows, n, acc, ast);
    default: return accumulate_k<X, 4>(x, group, p, pst, rows, stride, n_rows, n, acc, ast);
  }
}

bool served(const QuantSpec& spec, int group) {
  return group > 0 && group % 8 == 0 && (spec.bits == 2 || spec.bits == 4);
}

}  // namespace

bool available(const QuantSpec& spec, int group) {
  return served(spec, group);
}

void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out) {
  scores_multi(spec, group, levels, q, 0, qsum, 0, 1, n, rows, stride, n_rows, out, 0);
}

void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc) {
  accumulate_multi(spec, group, levels, p, 0, 1, rows, stride, n_rows, n, acc, 0);
}

void scores_multi(const QuantSpec& spec, int group, const float* levels, const float* q, size_t q_stride,
                  const float* qsum, size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride,
                  int64_t n_rows, float* out, size_t out_stride) {
  if (!served(spec, group)) {
#pragma GCC unroll 16
    for (int j = 0; j < nq; ++j) {
      ref::scores(spec, group, levels, q + j * q_stride, qsum + j * qsum_stride, n, rows, stride, n_rows,
                  out + j * out_stride);
    }
    return;
  }
  const bool gs = spec.levels == Levels::Gaussian;
  auto* k =
      spec.bits == 2 ? (gs ? scores_x<Gauss2> : scores_x<Uniform2>) : (gs ? scores_x<Gauss4> : scores_x<Uniform4>);
  k(nq, group, levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride);
}

void accumulate_multi(const QuantSpec& spec, int group, const float* levels, const float* p, size_t p_stride, int nq,
                      const uint8_t* rows, size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                      const RowsAhead* ahead) {
  request_ahead(ahead, 0, n_rows, n_rows);  // at the start (the x86 kernels spread them)
  if (!served(spec, group) || n / group > kMaxGroups) {
#pragma GCC unroll 16
    for (int j = 0; j < nq; ++j) {
      ref::accumulate(spec, group, levels, p + j * p_stride, rows, stride, n_rows, n, acc + j * acc_stride);
    }
    return;
  }
  const bool gs = spec.levels == Levels::Gaussian;
  auto* k = spec.bits == 2 ? (gs ? accumulate_x<Gauss2> : accumulate_x<Uniform2>)
                           : (gs ? accumulate_x<Gauss4> : accumulate_x<Uniform4>);
  k(nq, group, levels, p, p_stride, rows, stride, n_rows, n, acc, acc_stride);
}

#endif  // AKVQ_NEON

}  // namespace akvq::kv::simd
