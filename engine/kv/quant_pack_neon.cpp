// NEON packing of KV rows (quantize) for 2- and 4-bit codes, bit-identical to ref::quantize_row
// (other widths: the reference). The group headers come from the shared ref::group_header; codes
// are computed 4 values at a time — uniform: round-half-even((x − o) / s) clamped to [0, 2^b − 1]
// (maxnm maps NaN to 0, as the reference does), Gaussian: the number of Lloyd–Max midpoints below
// (x − o) / s — and every 8 codes are packed LSB-first into b bytes by per-lane shifts and one
// horizontal add (the shifted codes do not overlap, so the sum is their OR). The AVX2 version is
// quant_pack_avx2.cpp.
#include <cstring>

#include "core/fp16.h"
#include "cpu/simd.h"
#include "kv/quant.h"

namespace akvq::kv::simd {

#if defined(AKVQ_NEON) && !defined(AKVQ_AVX2)

namespace {

inline int32x4_t lanes_s(int32_t a, int32_t b, int32_t c, int32_t d) {
  const int32_t v[4] = {a, b, c, d};
  return vld1q_s32(v);
}

// Writes the 8 b-bit codes of c0 (values 0-3) and c1 (values 4-7) as b bytes at p.
template <int B>
inline void pack8(uint32x4_t c0, uint32x4_t c1, uint8_t* p) {
  const int32x4_t sh0 = lanes_s(0, B, 2 * B, 3 * B), sh1 = vaddq_s32(sh0, vdupq_n_s32(4 * B));
  const uint32_t w = vaddvq_u32(vorrq_u32(vshlq_u32(c0, sh0), vshlq_u32(c1, sh1)));
  std::memcpy(p, &w, B);  // little-endian: the low B bytes of w
}

template <int B, bool kGauss>
void quantize_row_k(const QuantSpec& spec, int group, const float* levels, const float* x, int n, uint8_t* out) {
  const int ng = n / group;
  uint8_t* codes = out + 4 * ng;
  constexpr int K = 1 << B;
  float thr[K - 1];  // Lloyd–Max midpoints, as ref's nearest() computes them
  if constexpr (kGauss) {
    for (int i = 0; i + 1 < K; ++i) thr[i] = 0.5f * (levels[i] + levels[i + 1]);
  }
  for (int g = 0; g < ng; ++g) {
    const float* xg = x + static_cast<size_t>(g) * group;
    const ref::GroupHeader h = ref::group_header(spec, xg, group);
    std::memcpy(out + 4 * g, &h.scale, 2);
    std::memcpy(out + 4 * g + 2, &h.offset, 2);
    uint8_t* cg = codes + static_cast<size_t>(g) * group * B / 8;
    const float s = fp16_to_f32(h.scale), o = fp16_to_f32(h.offset);
    if (s == 0.0f) {
      std::memset(cg, 0, static_cast<size_t>(group) * B / 8);
      continue;
    }
    const float32x4_t vs = vdupq_n_f32(s), vo = vdupq_n_f32(o);
    auto code4 = [&](const float* p) {
      const float32x4_t z = vdivq_f32(vsubq_f32(vld1q_f32(p), vo), vs);
      if constexpr (kGauss) {
        uint32x4_t c = vdupq_n_u32(0);
        for (int t = 0; t + 1 < K; ++t) c = vsubq_u32(c, vcgtq_f32(z, vdupq_n_f32(thr[t])));  // masks are -1
        return c;
      } else {
        const float32x4_t v = vmaxnmq_f32(vrndnq_f32(z), vdupq_n_f32(0.0f));  // NaN -> 0
        return vcvtq_u32_f32(vminq_f32(v, vdupq_n_f32(static_cast<float>(K - 1))));
      }
    };
    for (int i = 0; i < group; i += 8) pack8<B>(code4(xg + i), code4(xg + i + 4), cg + i * B / 8);
  }
}

template <int B, bool kGauss>
void quantize_rows_k(const QuantSpec& spec, int group, const float* levels, const float* x, int64_t x_stride,
                     int64_t n_rows, int n, uint8_t* out, size_t out_stride) {
  for (int64_t r = 0; r < n_rows; ++r) {
    quantize_row_k<B, kGauss>(spec, group, levels, x + r * x_stride, n, out + r * out_stride);
  }
}

}  // namespace

void quantize_rows(const QuantSpec& spec, int group, const float* levels, const float* x, int64_t x_stride,
                   int64_t n_rows, int n, uint8_t* out, size_t out_stride) {
  const bool gs = spec.levels == Levels::Gaussian;
  switch (spec.bits) {
    case 2:
      return gs ? quantize_rows_k<2, true>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride)
                : quantize_rows_k<2, false>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride);
    case 4:
      return gs ? quantize_rows_k<4, true>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride)
                : quantize_rows_k<4, false>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride);
    default:
      for (int64_t r = 0; r < n_rows; ++r) {
        ref::quantize_row(spec, group, levels, x + r * x_stride, n, out + r * out_stride);
      }
  }
}

#endif  // AKVQ_NEON

}  // namespace akvq::kv::simd
