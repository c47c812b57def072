// NEON scores of 2-bit rows of one group from 8-bit pair tables (contract: ref::scores_lut in
// quant.h; the AVX2 kernels of the same contract are in quant_lut_avx2.cpp). 16 rows are taken at
// a time: their code bytes are transposed so that one register holds byte c of the 16 rows, its
// low and high nibbles index tables 2c and 2c+1 with tbl, and the two int8 lookups of a row are
// added into its int16 sum by one widening add.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/simd.h"
#include "kv/quant.h"

namespace akvq::kv::simd {

#if defined(AKVQ_NEON) && !defined(AKVQ_AVX2)

namespace {

constexpr int kRows = 16;                // rows per block
constexpr int kMaxPos = kMaxLutRow / 2;  // tables (value pairs) per query

// col[c] byte k = code byte c of row k, for the 16 rows at row0 + u·stride (16 code bytes each).
// Four rounds of zipping the bytes of registers i and i + 8: each round rotates the 8-bit
// (register, byte) address of every byte left by one, so four rounds transpose.
inline void transpose16x16(const uint8_t* row0, size_t stride, uint8x16_t* col) {
  uint8x16_t x[16];
  for (int u = 0; u < 16; ++u) x[u] = vld1q_u8(row0 + u * stride);
  for (int round = 0; round < 4; ++round) {
    uint8x16_t y[16];
    for (int i = 0; i < 8; ++i) {
      y[2 * i] = vzip1q_u8(x[i], x[i + 8]);
      y[2 * i + 1] = vzip2q_u8(x[i], x[i + 8]);
    }
    for (int i = 0; i < 16; ++i) x[i] = y[i];
  }
  for (int c = 0; c < 16; ++c) col[c] = x[c];
}

// Tables of one query (ref::scores_lut's definition): tab[p] = the 16 int8 entries of pair p,
// p < n/2. Returns the entries' scale s (0, with zero tables, when lut_scale_usable says so).
inline float build_tables(const float* q, int n, const float* lc, int8x16_t* tab, float* tmp) {
  const float32x4_t l0 = vld1q_f32(lc);  // L'[i & 3]
  float32x4_t amax = vdupq_n_f32(0.0f);
  for (int p = 0; p < n / 2; ++p) {
    const float32x4_t al0 = vmulq_n_f32(l0, q[2 * p]);
    const float32x4_t b = vdupq_n_f32(q[2 * p + 1]);
    for (int k = 0; k < 4; ++k) {  // entries 4k .. 4k + 3: L'[i >> 2] = lc[k]
      const float32x4_t t = vfmaq_f32(al0, b, vdupq_n_f32(lc[k]));
      vst1q_f32(tmp + 16 * p + 4 * k, t);
      amax = vmaxq_f32(amax, vabsq_f32(t));
    }
  }
  const float mx = vmaxvq_f32(amax);  // NaN when an entry is NaN (fmax propagates it)
  if (!lut_scale_usable(mx)) {
    for (int p = 0; p < n / 2; ++p) tab[p] = vdupq_n_s8(0);
    return 0.0f;
  }
  const float32x4_t inv = vdupq_n_f32(127.0f / mx);
  for (int p = 0; p < n / 2; ++p) {
    int16x4_t h[4];
    for (int k = 0; k < 4; ++k) {
      h[k] = vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(tmp + 16 * p + 4 * k), inv)));  // nearest, ties even
    }
    tab[p] = vcombine_s8(vqmovn_s16(vcombine_s16(h[0], h[1])), vqmovn_s16(vcombine_s16(h[2], h[3])));
  }
  return mx / 127.0f;
}

template <int NQ>
void scores_lut_k(const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
                  const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost,
                  const RowsAhead* ahead, const LutQuery* pre) {
  float lc[4];
  const float mid = centred_levels(levels, lc);
  const int ch_n = n / 64;  // chunks of 16 code bytes
  int8x16_t own[NQ * kMaxPos];  // tables built here when not given
  float tmp[8 * kMaxLutRow];
  const int8x16_t* tab[NQ];
  float s[NQ], base[NQ], qs[NQ];
  lut_queries<NQ>(mid, qsum, qsst, pre, n, own,
                  [&](int j, int8x16_t* t) { return build_tables(q + j * qst, n, lc, t, tmp); }, tab, s, base, qs);
  uint8_t pad[kRows * (4 + kMaxLutRow / 4)];  // the last partial block
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int64_t t = 0; t < n_rows; t += kRows) {
    request_ahead(ahead, t, std::min<int64_t>(n_rows, t + kRows), n_rows);
    const uint8_t* r0;
    size_t rst;
    const int nr = lut_block(rows, stride, t, n_rows, kRows, n, pad, r0, rst);
    int16x8_t acc[2 * NQ];  // [query j][rows 0-7, 8-15]
    for (int j = 0; j < 2 * NQ; ++j) acc[j] = vdupq_n_s16(0);
    for (int ch = 0; ch < ch_n; ++ch) {
      uint8x16_t col[16];
      transpose16x16(r0 + 4 + 16 * ch, rst, col);
      for (int c = 0; c < 16; ++c) {
        const uint8x16_t lo = vandq_u8(col[c], m4), hi = vshrq_n_u8(col[c], 4);
        for (int j = 0; j < NQ; ++j) {
          const int8x16_t* tp = tab[j] + 32 * ch + 2 * c;
          const int8x16_t a = vqtbl1q_s8(tp[0], lo), b = vqtbl1q_s8(tp[1], hi);
          acc[2 * j] = vaddq_s16(acc[2 * j], vaddl_s8(vget_low_s8(a), vget_low_s8(b)));
          acc[2 * j + 1] = vaddq_s16(acc[2 * j + 1], vaddl_high_s8(a, b));
        }
      }
    }
    float16_t hs[kRows], ho[kRows];
    for (int u = 0; u < kRows; ++u) {
      std::memcpy(hs + u, r0 + u * rst, 2);
      std::memcpy(ho + u, r0 + u * rst + 2, 2);
    }
    for (int j = 0; j < NQ; ++j) {
      const int16x4_t part[4] = {vget_low_s16(acc[2 * j]), vget_high_s16(acc[2 * j]), vget_low_s16(acc[2 * j + 1]),
                                 vget_high_s16(acc[2 * j + 1])};
      float o[kRows];
      for (int h = 0; h < 4; ++h) {
        const float32x4_t sc = vcvt_f32_f16(vld1_f16(hs + 4 * h)), of = vcvt_f32_f16(vld1_f16(ho + 4 * h));
        const float32x4_t d = vfmaq_f32(vdupq_n_f32(base[j]), vcvtq_f32_s32(vmovl_s16(part[h])), vdupq_n_f32(s[j]));
        vst1q_f32(o + 4 * h, vfmaq_f32(vmulq_n_f32(of, qs[j]), sc, d));
      }
      std::memcpy(out + j * ost + t, o, sizeof(float) * nr);
    }
  }
}

}  // namespace

size_t lut_query_bytes(int n) {
  return static_cast<size_t>(n / 2) * sizeof(int8x16_t);
}

float lut_prepare(const float* levels, const float* q, int n, void* tab) {
  float lc[4];
  centred_levels(levels, lc);
  float tmp[8 * kMaxLutRow];
  return build_tables(q, n, lc, static_cast<int8x16_t*>(tab), tmp);
}

void scores_lut(const float* levels, const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                const RowsAhead* ahead, const LutQuery* pre) {
  switch (nq) {
    case 1: return scores_lut_k<1>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
    case 2: return scores_lut_k<2>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
    case 3: return scores_lut_k<3>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
    default: return scores_lut_k<4>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
  }
}

#endif

}  // namespace akvq::kv::simd
