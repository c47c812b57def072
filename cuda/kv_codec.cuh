// The AKVQ cache's row arithmetic for the CUDA kernels, as host/device functions (the CPU tests
// run them and compare with the engine: codes and headers bit for bit, scores within rounding).
//
// Row layout (the CPU cache's, engine/kv/quant.h): a row of n values is n / G groups of G values;
//   [n/G × {fp16 scale, fp16 offset}] then one LSB-first code stream of b bits per value.
// Group g decodes as x̂ᵢ = offset_g + scale_g · L[codeᵢ], L the level table (uniform: L[c] = c;
// Gaussian: the Lloyd–Max codebook of N(0,1), passed in by the caller).
// G is a multiple of 8, so every group's codes start on a byte: threads may own groups.
//
// The normalized Walsh–Hadamard transform (engine/kv/wht.h): block-diagonal over the binary
// decomposition of n (largest block first); each block m runs radix-2 stages h = 1, 2, ..., m/2
// of butterflies (a, b) -> (a + b, a − b) and is scaled by 1/sqrt(m). The pairs of one stage are
// disjoint, so any thread mapping of a stage gives the same bits as the serial loop.
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.cuh"

namespace akvq_cuda {

constexpr int kMaxLevels = 256;   // 2^8: the largest level table (8-bit uniform)
constexpr int kMaxHeadDim = 256;  // longest row the kernels serve

// Quantization of one class of rows (one of K or V, one precision class).
struct RowSpec {
  int n = 0;          // values per row (head_dim)
  int group = 0;      // values per group: a multiple of 8 dividing n
  int bits = 2;       // 2, 3, 4 or 8
  float clip = 1.0f;  // uniform: range = clip·[min, max]; Gaussian: scale = clip·std
  bool gaussian = false;
  AKVQ_HD int n_groups() const { return n / group; }
  AKVQ_HD int row_bytes() const { return 4 * (n / group) + n * bits / 8; }
  AKVQ_HD int group_code_bytes() const { return group * bits / 8; }
};

// ---- Walsh–Hadamard transform ----

// Index of the first element of butterfly pair p (0 <= p < m/2) of stage h in a block.
AKVQ_HD int wht_pair_first(int p, int h) {
  return (p / h) * 2 * h + p % h;
}

AKVQ_HD void wht_butterfly(float* x, int i, int h) {
  const float a = x[i], b = x[i + h];
  x[i] = add_rn(a, b);
  x[i + h] = sub_rn(a, b);
}

AKVQ_HD float wht_scale(int m) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(1.0f, __fsqrt_rn(static_cast<float>(m)));
#else
  return opaque(1.0f / std::sqrt(static_cast<float>(m)));
#endif
}

// Size of the block that starts at offset `off` of a row of n values (0 when off >= n).
AKVQ_HD int wht_block_at(int n, int off) {
  int done = 0;
  for (int bit = 30; bit >= 0; --bit) {
    const int m = 1 << bit;
    if ((n & m) == 0) continue;
    if (done == off) return m;
    done += m;
  }
  return 0;
}

// Serial normalized WHT of x[n] (one thread).
AKVQ_HD void wht_row(float* x, int n) {
  for (int off = 0; off < n;) {
    const int m = wht_block_at(n, off);
    for (int h = 1; h < m; h <<= 1) {
      for (int p = 0; p < m / 2; ++p) wht_butterfly(x + off, wht_pair_first(p, h), h);
    }
    const float s = wht_scale(m);
    for (int i = 0; i < m; ++i) x[off + i] = mul_rn(x[off + i], s);
    off += m;
  }
}

// ---- codes ----

AKVQ_HD unsigned code_at(const uint8_t* codes, int bits, int j) {
  const int bit = bits * j;
  unsigned w = codes[bit >> 3];
  if ((bit & 7) + bits > 8) w |= static_cast<unsigned>(codes[(bit >> 3) + 1]) << 8;
  return (w >> (bit & 7)) & ((1u << bits) - 1);
}

// Writes code c as value j of a zeroed LSB-first stream.
AKVQ_HD void put_code(uint8_t* codes, int bits, int j, unsigned c) {
  const int bit = bits * j;
  const unsigned w = c << (bit & 7);
  codes[bit >> 3] = static_cast<uint8_t>(codes[bit >> 3] | (w & 0xffu));
  if ((bit & 7) + bits > 8) codes[(bit >> 3) + 1] = static_cast<uint8_t>(codes[(bit >> 3) + 1] | (w >> 8));
}

AKVQ_HD uint16_t load_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
AKVQ_HD void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xffu);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// Nearest level of z in the ascending table lv[k] (ties to the lower level).
AKVQ_HD unsigned nearest_level(const float* lv, int k, float z) {
  unsigned c = 0;
  for (int i = 0; i + 1 < k; ++i) c += z > 0.5f * (lv[i] + lv[i + 1]) ? 1u : 0u;
  return c;
}

// Quantizes one group xg[spec.group] (one thread): its 4-byte header {fp16 scale, fp16 offset}
// goes to hdr, its codes to codes[spec.group_code_bytes()] (overwritten).
//   uniform:  lo = clip·min, hi = clip·max, scale = fp16((hi − lo) / (2^b − 1)), offset = fp16(lo),
//             code = clamp(rint((x − offset) / scale), 0, 2^b − 1) (NaN -> 0)
//   Gaussian: offset = fp16(mean), scale = fp16(clip · population std) (sums in double),
//             code = nearest level of (x − offset) / scale
//   constant group (max == min): scale 0, offset = fp16(value), codes 0.
AKVQ_HD void quantize_group(const RowSpec& spec, const float* levels, const float* xg, uint8_t* hdr, uint8_t* codes) {
  const int G = spec.group, bits = spec.bits;
  for (int i = 0; i < G * bits / 8; ++i) codes[i] = 0;
  float mn = xg[0], mx = xg[0];
  for (int i = 1; i < G; ++i) {
    mn = xg[i] < mn ? xg[i] : mn;
    mx = mx < xg[i] ? xg[i] : mx;
  }
  uint16_t hs = 0, ho = 0;
  if (mx == mn) {
    ho = float_to_half(mn);
  } else if (!spec.gaussian) {
    const float lo = mul_rn(spec.clip, mn), hi = mul_rn(spec.clip, mx);
    hs = float_to_half(sub_rn(hi, lo) / static_cast<float>((1u << bits) - 1));
    ho = float_to_half(lo);
  } else {
    double sum = 0;
    for (int i = 0; i < G; ++i) sum = dadd_rn(sum, xg[i]);
    const double mean = sum / G;
    double ss = 0;
    for (int i = 0; i < G; ++i) {
      const double d = xg[i] - mean;
      ss = dadd_rn(ss, dmul_rn(d, d));
    }
    const double sd = sqrt(ss / G);
    hs = float_to_half(static_cast<float>(static_cast<double>(spec.clip) * sd));
    ho = float_to_half(static_cast<float>(mean));
  }
  store_u16(hdr, hs);
  store_u16(hdr + 2, ho);
  const float s = half_to_float(hs), o = half_to_float(ho);
  if (s == 0.0f) return;
  if (!spec.gaussian) {
    const float qmax = static_cast<float>((1u << bits) - 1);
    for (int i = 0; i < G; ++i) {
      float v = rintf(sub_rn(xg[i], o) / s);
      v = v >= 0.0f ? (v < qmax ? v : qmax) : 0.0f;  // also maps NaN to 0
      put_code(codes, bits, i, static_cast<unsigned>(v));
    }
  } else {
    const int k = 1 << bits;
    for (int i = 0; i < G; ++i) put_code(codes, bits, i, nearest_level(levels, k, sub_rn(xg[i], o) / s));
  }
}

// Group g's header and code bytes within a packed row.
AKVQ_HD uint8_t* group_header_ptr(uint8_t* row, int g) {
  return row + 4 * g;
}
AKVQ_HD uint8_t* group_codes_ptr(const RowSpec& s, uint8_t* row, int g) {
  return row + 4 * s.n_groups() + g * s.group_code_bytes();
}

// Serial quantization of a whole row x[n] into row[spec.row_bytes()].
AKVQ_HD void quantize_row(const RowSpec& spec, const float* levels, const float* x, uint8_t* row) {
  for (int g = 0; g < spec.n_groups(); ++g) {
    quantize_group(spec, levels, x + g * spec.group, group_header_ptr(row, g), group_codes_ptr(spec, row, g));
  }
}

// x̂_j of a packed row.
AKVQ_HD float dequant_value(const RowSpec& spec, const float* levels, const uint8_t* row, int j) {
  const int g = j / spec.group;
  const float s = half_to_float(load_u16(row + 4 * g)), o = half_to_float(load_u16(row + 4 * g + 2));
  return o + s * levels[code_at(row + 4 * spec.n_groups(), spec.bits, j)];
}

// q·x̂ of one packed row (one thread): Σ_g scale_g · Σ_{i∈g} q_i·L[c_i] + offset_g · qsum_g, with
// qsum[g] = Σ_{i∈g} q_i computed once per query.
AKVQ_HD float row_score(const RowSpec& spec, const float* levels, const float* q, const float* qsum,
                        const uint8_t* row) {
  const int ng = spec.n_groups();
  const uint8_t* codes = row + 4 * ng;
  float acc = 0.0f;
  for (int g = 0; g < ng; ++g) {
    const float s = half_to_float(load_u16(row + 4 * g)), o = half_to_float(load_u16(row + 4 * g + 2));
    float d = 0.0f;
    for (int i = 0; i < spec.group; ++i) {
      const int j = g * spec.group + i;
      d += q[j] * levels[code_at(codes, spec.bits, j)];
    }
    acc += s * d + o * qsum[g];
  }
  return acc;
}

// q·k of one fp16 row k[n].
AKVQ_HD float half_row_score(const float* q, const uint16_t* k, int n) {
  float acc = 0.0f;
  for (int j = 0; j < n; ++j) acc += q[j] * half_to_float(k[j]);
  return acc;
}

// ---- online softmax ----

// The running state of one query row over a range of keys: max score m, sum l of exp(s − m),
// and acc[n] = Σ exp(s − m)·v (held by the caller). An empty state has l == 0.
struct SoftmaxState {
  float m = -INFINITY;
  float l = 0.0f;
};

// Merges state b (with its accumulator value bacc) into a (aacc): returns the factors fa, fb with
// which the caller scales the accumulators (acc = fa·aacc + fb·bacc) and updates a.m, a.l.
AKVQ_HD void softmax_merge(SoftmaxState& a, const SoftmaxState& b, float& fa, float& fb) {
  if (b.l == 0.0f) {
    fa = 1.0f, fb = 0.0f;
    return;
  }
  if (a.l == 0.0f) {
    fa = 0.0f, fb = 1.0f;
    a = b;
    return;
  }
  const float m = a.m > b.m ? a.m : b.m;
  fa = expf(a.m - m), fb = expf(b.m - m);
  a.l = a.l * fa + b.l * fb;
  a.m = m;
}

}  // namespace akvq_cuda
