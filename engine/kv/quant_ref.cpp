// Scalar reference kernels of the packed KV rows: quantize, dequantize, scores, accumulate.
// group_header is shared with the SIMD quantizer (quant_pack_avx2.cpp).
#include <akvq/error.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kv/quant.h"

namespace akvq::kv::ref {

namespace {

// Forces v to be rounded to its type before it is used (no FMA contraction across it), so the
// quantizer gives the same bits in every build (the uniform one those of a plain float32 numpy
// evaluation of the same formula).
template <class T>
inline T opaque(T v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(v));
  return v;
#else
  volatile T t = v;
  return t;
#endif
}

inline uint16_t rd16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline void wr16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xff);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// Writes b-bit code c as value j of the LSB-first code stream (bytes must start zeroed).
inline void put_code(uint8_t* codes, int bits, int j, unsigned c) {
  const int bit = bits * j;
  const unsigned w = c << (bit & 7);
  codes[bit >> 3] = static_cast<uint8_t>(codes[bit >> 3] | (w & 0xff));
  if ((bit & 7) + bits > 8) codes[(bit >> 3) + 1] = static_cast<uint8_t>(codes[(bit >> 3) + 1] | (w >> 8));
}

// Nearest level of z in the ascending table lv[k] (ties go to the lower level).
inline unsigned nearest(const float* lv, int k, float z) {
  unsigned c = 0;
  for (int i = 0; i + 1 < k; ++i) c += z > 0.5f * (lv[i] + lv[i + 1]) ? 1u : 0u;
  return c;
}

}  // namespace

GroupHeader group_header(const QuantSpec& spec, const float* xg, int group) {
  float mn = xg[0], mx = xg[0];
  for (int i = 1; i < group; ++i) {
    mn = std::min(mn, xg[i]);
    mx = std::max(mx, xg[i]);
  }
  GroupHeader h;
  if (mx == mn) {  // constant group: exact (up to fp16) with scale 0
    h.offset = f32_to_fp16(mn);
  } else if (spec.levels == Levels::Uniform) {
    const unsigned qmax = (1u << spec.bits) - 1;
    const float lo = opaque(spec.clip * mn), hi = opaque(spec.clip * mx);
    h.scale = f32_to_fp16(opaque(hi - lo) / static_cast<float>(qmax));
    h.offset = f32_to_fp16(lo);
  } else {  // Gaussian: offset = mean, scale = clip · std
    double sum = 0;
    for (int i = 0; i < group; ++i) sum += xg[i];
    const double mean = sum / group;
    double ss = 0;  // products rounded before the sum (no FMA): the same bits in every build
    for (int i = 0; i < group; ++i) ss += opaque((xg[i] - mean) * (xg[i] - mean));
    const double sd = std::sqrt(ss / group);
    h.scale = f32_to_fp16(static_cast<float>(spec.clip * sd));
    h.offset = f32_to_fp16(static_cast<float>(mean));
  }
  return h;
}

void quantize_row(const QuantSpec& spec, int group, const float* levels, const float* x, int n, uint8_t* out) {
  const int ng = n / group;
  const int bits = spec.bits;
  const unsigned qmax = (1u << bits) - 1;
  uint8_t* codes = out + 4 * ng;
  std::memset(codes, 0, static_cast<size_t>(n) * bits / 8);
  for (int g = 0; g < ng; ++g) {
    const float* xg = x + g * group;
    const GroupHeader h = group_header(spec, xg, group);
    const float s = fp16_to_f32(h.scale), o = fp16_to_f32(h.offset);
    if (s != 0.0f && spec.levels == Levels::Uniform) {
      for (int i = 0; i < group; ++i) {
        float v = std::nearbyint(opaque(xg[i] - o) / s);
        v = v >= 0.0f ? std::min(v, static_cast<float>(qmax)) : 0.0f;  // also maps NaN to 0
        put_code(codes, bits, g * group + i, static_cast<unsigned>(v));
      }
    } else if (s != 0.0f) {  // nearest Lloyd–Max level
      const int k = 1 << bits;
      for (int i = 0; i < group; ++i) put_code(codes, bits, g * group + i, nearest(levels, k, (xg[i] - o) / s));
    }
    wr16(out + 4 * g, h.scale);
    wr16(out + 4 * g + 2, h.offset);
  }
}

void dequantize_row(const QuantSpec& spec, int group, const float* levels, const uint8_t* row, int n, float* out) {
  const int ng = n / group;
  const uint8_t* codes = row + 4 * ng;
  for (int g = 0; g < ng; ++g) {
    const float s = fp16_to_f32(rd16(row + 4 * g)), o = fp16_to_f32(rd16(row + 4 * g + 2));
    for (int i = 0; i < group; ++i) {
      const int j = g * group + i;
      out[j] = o + s * levels[code_at(codes, spec.bits, j)];
    }
  }
}

void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out) {
  const int ng = n / group;
  for (int64_t t = 0; t < n_rows; ++t) {
    const uint8_t* row = rows + t * stride;
    const uint8_t* codes = row + 4 * ng;
    float acc = 0;
    for (int g = 0; g < ng; ++g) {
      const float s = fp16_to_f32(rd16(row + 4 * g)), o = fp16_to_f32(rd16(row + 4 * g + 2));
      float d = 0;
      for (int i = 0; i < group; ++i) {
        const int j = g * group + i;
        d += q[j] * levels[code_at(codes, spec.bits, j)];
      }
      acc += s * d + o * qsum[g];
    }
    out[t] = acc;
  }
}

void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc) {
  const int ng = n / group;
  for (int64_t t = 0; t < n_rows; ++t) {
    const uint8_t* row = rows + t * stride;
    const uint8_t* codes = row + 4 * ng;
    for (int g = 0; g < ng; ++g) {
      const float w = p[t] * fp16_to_f32(rd16(row + 4 * g));
      const float po = p[t] * fp16_to_f32(rd16(row + 4 * g + 2));
      for (int i = 0; i < group; ++i) {
        const int j = g * group + i;
        acc[j] += w * levels[code_at(codes, spec.bits, j)] + po;
      }
    }
  }
}

void scores_lut(const float* levels, const float* q, float qsum, int n, const uint8_t* rows, size_t stride,
                int64_t n_rows, float* out) {
  float lc[4];
  const float mid = simd::centred_levels(levels, lc);
  const int np = n / 2;
  std::vector<float> T(static_cast<size_t>(np) * 16);
  float amax = 0.0f;
  bool nan = false;
  for (int p = 0; p < np; ++p) {
    for (int i = 0; i < 16; ++i) {
      const float t = std::fma(q[2 * p + 1], lc[i >> 2], opaque(q[2 * p] * lc[i & 3]));
      T[static_cast<size_t>(p) * 16 + i] = t;
      amax = std::max(amax, std::fabs(t));
      nan = nan || std::isnan(t);
    }
  }
  const bool usable = !nan && simd::lut_scale_usable(amax);
  const float inv = usable ? 127.0f / amax : 0.0f, s = usable ? amax / 127.0f : 0.0f;
  std::vector<int> T8(T.size(), 0);
  if (usable) {
    for (size_t k = 0; k < T.size(); ++k) T8[k] = static_cast<int>(std::nearbyint(opaque(T[k] * inv)));
  }
  const float base = opaque(mid * qsum);
  for (int64_t t = 0; t < n_rows; ++t) {
    const uint8_t* r = rows + t * stride;
    const uint8_t* codes = r + 4;
    int isum = 0;
    for (int p = 0; p < np; ++p) isum += T8[static_cast<size_t>(p) * 16 + ((codes[p / 2] >> (4 * (p & 1))) & 15)];
    const float sc = fp16_to_f32(rd16(r)), of = fp16_to_f32(rd16(r + 2));
    out[t] = std::fma(sc, std::fma(static_cast<float>(isum), s, base), opaque(of * qsum));
  }
}

}  // namespace akvq::kv::ref
