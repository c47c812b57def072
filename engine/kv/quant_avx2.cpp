// AVX2 attention kernels over packed KV rows (layout in quant.h). Codes are expanded 8 at a time
// into int32 lanes with one variable shift (vpsrlvd) of a broadcast word and a mask, then mapped
// to levels: uniform -> int->float convert, Gaussian -> a lane permute of the level table (two
// permutes and a blend for 16 levels). Scores keep 2 accumulators per group and reduce 4 rows
// at a time with horizontal adds; accumulate keeps a tile of up to 64 output channels in
// registers while it walks the rows, and adds the per-group offset sums at the end.
#include <algorithm>
#include <cstring>

#include "cpu/simd.h"
#include "kv/quant.h"

namespace akvq::kv::simd {

#ifdef AKVQ_AVX2

namespace {

constexpr int kMaxGroups = 64;
constexpr int kMaxScaledN = 1024;  // longest row served by the 2-bit uniform scores kernel
constexpr int64_t kRowBlock = 64;  // rows per block when a row spans several column tiles

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 8 codes of B bits from p[B bytes] into int32 lanes.
template <int B>
inline __m256i unpack8(const uint8_t* p);

template <>
inline __m256i unpack8<2>(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  const __m256i v = _mm256_set1_epi32(w);
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), _mm256_set1_epi32(3));
}
template <>
inline __m256i unpack8<3>(const uint8_t* p) {
  const uint32_t w = p[0] | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21)), _mm256_set1_epi32(7));
}
template <>
inline __m256i unpack8<4>(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)), _mm256_set1_epi32(15));
}
template <>
inline __m256i unpack8<8>(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// 16 codes of 2 bits from p[4 bytes]: values 0..7 in a, 8..15 in b.
inline void unpack16_2(const uint8_t* p, __m256i& a, __m256i& b) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  const __m256i m = _mm256_set1_epi32(3);
  a = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), m);
  b = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30)), m);
}

// 2-bit uniform codes without per-lane shifts: broadcast the code word and keep lane i's bits
// with a mask, so lane i of a low chunk holds c·4^i and of a high chunk c·2^(15+2i) (exact in
// float). The kernels fold the inverse powers of two into q (scores) or into the accumulator
// (accumulate), which is exact: the results equal the unscaled arithmetic bit for bit.
inline __m256i mask_lo2() {
  return _mm256_setr_epi32(3, 3 << 2, 3 << 4, 3 << 6, 3 << 8, 3 << 10, 3 << 12, 3 << 14);
}
inline __m256i mask_hi2() {
  return _mm256_setr_epi32(3 << 15, 3 << 17, 3 << 19, 3 << 21, 3 << 23, 3 << 25, 3 << 27, 3 << 29);
}
inline __m256 scale_lo2() {
  return _mm256_setr_ps(1.0f, 0x1p-2f, 0x1p-4f, 0x1p-6f, 0x1p-8f, 0x1p-10f, 0x1p-12f, 0x1p-14f);
}
inline __m256 scale_hi2() {
  return _mm256_setr_ps(0x1p-15f, 0x1p-17f, 0x1p-19f, 0x1p-21f, 0x1p-23f, 0x1p-25f, 0x1p-27f, 0x1p-29f);
}
// 16 codes from p[4 bytes] (lo: values 0..7 scaled by 4^i, hi: values 8..15 by 2^(15+2i)).
inline void masked16_2(const uint8_t* p, __m256& lo, __m256& hi) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  const __m256i v = _mm256_set1_epi32(static_cast<int>(w));
  lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, mask_lo2()));
  hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 1), mask_hi2()));
}
// 8 codes from p[2 bytes], lane i scaled by 4^i.
inline __m256 masked8_2(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_set1_epi32(w), mask_lo2()));
}

struct Lut {
  __m256 lo, hi;  // levels 0..7 and 8..15 (Gaussian only)
};

template <int B, bool kGauss>
Lut make_lut(const float* levels) {
  Lut L{_mm256_setzero_ps(), _mm256_setzero_ps()};
  if (kGauss) {
    float t[16] = {};
    for (int i = 0; i < (1 << B) && i < 16; ++i) t[i] = levels[i];
    L.lo = _mm256_loadu_ps(t);
    L.hi = _mm256_loadu_ps(t + 8);
  }
  return L;
}

template <int B, bool kGauss>
inline __m256 level(__m256i c, const Lut& L) {
  if constexpr (!kGauss) {
    return _mm256_cvtepi32_ps(c);
  } else if constexpr (B <= 3) {
    return _mm256_permutevar8x32_ps(L.lo, c);
  } else {
    const __m256 lo = _mm256_permutevar8x32_ps(L.lo, c);
    const __m256 hi = _mm256_permutevar8x32_ps(L.hi, c);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
  }
}

// ---------------------------------------------------------------- scores

// Scores of R consecutive rows, interleaved chunk by chunk (R independent FMA chains share each
// load of q). out[u] = Σ_g scale_g · (q_g · L[codes_g]) + Σ_g offset_g · qsum_g.
template <int B, bool kGauss, int CPG, int R, bool kScaled = false>
inline void rows_dot(const uint8_t* row0, size_t stride, int ng, int cpg_rt, const float* q, const float* qsum,
                     const Lut& L, __m256* r, float* off) {
  const int cpg = CPG ? CPG : cpg_rt;
  const size_t code0 = 4 * static_cast<size_t>(ng);
#pragma GCC unroll 4
  for (int u = 0; u < R; ++u) r[u] = _mm256_setzero_ps(), off[u] = 0.0f;
  for (int g = 0; g < ng; ++g) {
    __m256 a[R];
#pragma GCC unroll 4
    for (int u = 0; u < R; ++u) a[u] = _mm256_setzero_ps();
    const size_t cg = code0 + static_cast<size_t>(g) * cpg * B;
    const float* qg = q + g * cpg * 8;
    int k = 0;
    if constexpr (B == 2) {
#pragma GCC unroll 8
      for (; k + 2 <= cpg; k += 2) {
        const __m256 q0 = _mm256_loadu_ps(qg + 8 * k), q1 = _mm256_loadu_ps(qg + 8 * k + 8);
#pragma GCC unroll 4
        for (int u = 0; u < R; ++u) {
          if constexpr (kScaled) {
            __m256 f0, f1;
            masked16_2(row0 + u * stride + cg + k * B, f0, f1);
            a[u] = _mm256_fmadd_ps(f0, q0, a[u]);
            a[u] = _mm256_fmadd_ps(f1, q1, a[u]);
          } else {
            __m256i c0, c1;
            unpack16_2(row0 + u * stride + cg + k * B, c0, c1);
            a[u] = _mm256_fmadd_ps(level<B, kGauss>(c0, L), q0, a[u]);
            a[u] = _mm256_fmadd_ps(level<B, kGauss>(c1, L), q1, a[u]);
          }
        }
      }
    }
#pragma GCC unroll 16
    for (; k < cpg; ++k) {
      const __m256 q0 = _mm256_loadu_ps(qg + 8 * k);
#pragma GCC unroll 4
      for (int u = 0; u < R; ++u) {
        if constexpr (kScaled) {
          a[u] = _mm256_fmadd_ps(masked8_2(row0 + u * stride + cg + k * B), q0, a[u]);
        } else {
          a[u] = _mm256_fmadd_ps(level<B, kGauss>(unpack8<B>(row0 + u * stride + cg + k * B), L), q0, a[u]);
        }
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < R; ++u) {
      const uint8_t* h = row0 + u * stride + 4 * g;
      r[u] = _mm256_fmadd_ps(a[u], _mm256_set1_ps(half_at(h)), r[u]);
      off[u] += half_at(h + 2) * qsum[g];
    }
  }
}

template <int B, bool kGauss, int CPG>
void scores_k(int group, const float* levels, const float* q, const float* qsum, int n, const uint8_t* rows,
              size_t stride, int64_t n_rows, float* out) {
  const int ng = n / group, cpg = group / 8;
  const Lut L = make_lut<B, kGauss>(levels);
  constexpr bool kScaled = B == 2 && !kGauss;
  alignas(32) float qs[kScaled ? kMaxScaledN : 1];
  if constexpr (kScaled) {  // q with the inverse lane scales of masked16_2 / masked8_2 folded in
    for (int g = 0; g < ng; ++g) {
      int k = 0;
      for (; k + 2 <= cpg; k += 2) {
        const int j = g * group + 8 * k;
        _mm256_store_ps(qs + j, _mm256_mul_ps(_mm256_loadu_ps(q + j), scale_lo2()));
        _mm256_store_ps(qs + j + 8, _mm256_mul_ps(_mm256_loadu_ps(q + j + 8), scale_hi2()));
      }
      if (k < cpg)
        _mm256_store_ps(qs + g * group + 8 * k, _mm256_mul_ps(_mm256_loadu_ps(q + g * group + 8 * k), scale_lo2()));
    }
    q = qs;
  }
  int64_t t = 0;
  for (; t + 4 <= n_rows; t += 4) {
    alignas(16) float off[4];
    __m256 v[4];
    rows_dot<B, kGauss, CPG, 4, kScaled>(rows + t * stride, stride, ng, cpg, q, qsum, L, v, off);
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(out + t, _mm_add_ps(s, _mm_load_ps(off)));
  }
  for (; t < n_rows; ++t) {
    float off;
    __m256 v;
    rows_dot<B, kGauss, CPG, 1, kScaled>(rows + t * stride, stride, ng, cpg, q, qsum, L, &v, &off);
    out[t] = cpu::hsum(v) + off;
  }
}

template <int B, bool kGauss>
void scores_cpg(int group, const float* levels, const float* q, const float* qsum, int n, const uint8_t* rows,
                size_t stride, int64_t n_rows, float* out) {
  switch (group / 8) {
    case 4: return scores_k<B, kGauss, 4>(group, levels, q, qsum, n, rows, stride, n_rows, out);
    case 8: return scores_k<B, kGauss, 8>(group, levels, q, qsum, n, rows, stride, n_rows, out);
    case 16: return scores_k<B, kGauss, 16>(group, levels, q, qsum, n, rows, stride, n_rows, out);
    default: return scores_k<B, kGauss, 0>(group, levels, q, qsum, n, rows, stride, n_rows, out);
  }
}

// ---------------------------------------------------------------- accumulate

// acc[8·NCH] (channels chunk0·8 ...) += Σ_t p_t · scale_{t,g} · L[codes], rows [t0, t1).
template <int B, bool kGauss, int NCH>
void acc_tile(const float* p, const uint8_t* rows, size_t stride, int64_t t0, int64_t t1, int ng, int g, int chunk0,
              const Lut& L, float* acc) {
  constexpr bool kScaled = B == 2 && !kGauss;
  // lane scales of masked16_2 / masked8_2 per register: pairs (lo, hi), an odd last one lo
  auto lane_scale = [](int c) { return (c % 2 == 1) ? scale_hi2() : scale_lo2(); };
  __m256 a[NCH];
#pragma GCC unroll 8
  for (int c = 0; c < NCH; ++c) {
    a[c] = _mm256_loadu_ps(acc + 8 * c);
    if constexpr (kScaled) a[c] = _mm256_div_ps(a[c], lane_scale(c));
  }
  const size_t code_off = 4 * static_cast<size_t>(ng) + static_cast<size_t>(chunk0) * B;
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* row = rows + t * stride;
    const __m256 w = _mm256_set1_ps(p[t] * half_at(row + 4 * g));
    const uint8_t* codes = row + code_off;
    int c = 0;
    if constexpr (B == 2) {
#pragma GCC unroll 4
      for (; c + 2 <= NCH; c += 2) {
        if constexpr (kScaled) {
          __m256 f0, f1;
          masked16_2(codes + c * B, f0, f1);
          a[c] = _mm256_fmadd_ps(f0, w, a[c]);
          a[c + 1] = _mm256_fmadd_ps(f1, w, a[c + 1]);
        } else {
          __m256i c0, c1;
          unpack16_2(codes + c * B, c0, c1);
          a[c] = _mm256_fmadd_ps(level<B, kGauss>(c0, L), w, a[c]);
          a[c + 1] = _mm256_fmadd_ps(level<B, kGauss>(c1, L), w, a[c + 1]);
        }
      }
    }
#pragma GCC unroll 8
    for (; c < NCH; ++c) {
      if constexpr (kScaled) {
        a[c] = _mm256_fmadd_ps(masked8_2(codes + c * B), w, a[c]);
      } else {
        a[c] = _mm256_fmadd_ps(level<B, kGauss>(unpack8<B>(codes + c * B), L), w, a[c]);
      }
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NCH; ++c) {
    if constexpr (kScaled) a[c] = _mm256_mul_ps(a[c], lane_scale(c));
    _mm256_storeu_ps(acc + 8 * c, a[c]);
  }
}

template <int B, bool kGauss>
void acc_tile_n(int nch, const float* p, const uint8_t* rows, size_t stride, int64_t t0, int64_t t1, int ng, int g,
                int chunk0, const Lut& L, float* acc) {
  switch (nch) {
    case 8: return acc_tile<B, kGauss, 8>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
    case 7: return acc_tile<B, kGauss, 7>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
    case 6: return acc_tile<B, kGauss, 6>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
    case 5: return acc_tile<B, kGauss, 5>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
    case 4: return acc_tile<B, kGauss, 4>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
    case 3: return acc_tile<B, kGauss, 3>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
    case 2: return acc_tile<B, kGauss, 2>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
    default: return acc_tile<B, kGauss, 1>(p, rows, stride, t0, t1, ng, g, chunk0, L, acc);
  }
}

template <int B, bool kGauss>
void accumulate_k(int group, const float* levels, const float* p, const uint8_t* rows, size_t stride, int64_t n_rows,
                  int n, float* acc) {
  const int ng = n / group, cpg = group / 8;
  int nch = 8;
  while (cpg % nch != 0) --nch;  // largest divisor of cpg that is <= 8: tiles stay in one group
  const Lut L = make_lut<B, kGauss>(levels);
  float osum[kMaxGroups] = {};
  const int64_t block = (ng * cpg / nch > 1) ? kRowBlock : n_rows;
  for (int64_t t0 = 0; t0 < n_rows; t0 += block) {
    const int64_t t1 = std::min(n_rows, t0 + block);
    for (int g = 0; g < ng; ++g) {
      for (int k = 0; k < cpg; k += nch) {
        acc_tile_n<B, kGauss>(nch, p, rows, stride, t0, t1, ng, g, g * cpg + k, L, acc + (g * cpg + k) * 8);
      }
    }
    for (int64_t t = t0; t < t1; ++t) {
      const uint8_t* row = rows + t * stride;
      for (int g = 0; g < ng; ++g) osum[g] += p[t] * half_at(row + 4 * g + 2);
    }
  }
  for (int g = 0; g < ng; ++g) {
    const __m256 o = _mm256_set1_ps(osum[g]);
    for (int j = g * group; j < (g + 1) * group; j += 8) {
      _mm256_storeu_ps(acc + j, _mm256_add_ps(_mm256_loadu_ps(acc + j), o));
    }
  }
}

}  // namespace

bool available(const QuantSpec& spec, int group) {
  if (group <= 0 || group % 8 != 0) return false;
  if (spec.bits == 8 && spec.levels != Levels::Uniform) return false;
  return spec.bits == 2 || spec.bits == 3 || spec.bits == 4 || spec.bits == 8;
}

void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out) {
  const bool gs = spec.levels == Levels::Gaussian;
  switch (spec.bits) {
    case 2:
      return gs ? scores_cpg<2, true>(group, levels, q, qsum, n, rows, stride, n_rows, out)
                : scores_cpg<2, false>(group, levels, q, qsum, n, rows, stride, n_rows, out);
    case 3:
      return gs ? scores_cpg<3, true>(group, levels, q, qsum, n, rows, stride, n_rows, out)
                : scores_cpg<3, false>(group, levels, q, qsum, n, rows, stride, n_rows, out);
    case 4:
      return gs ? scores_cpg<4, true>(group, levels, q, qsum, n, rows, stride, n_rows, out)
                : scores_cpg<4, false>(group, levels, q, qsum, n, rows, stride, n_rows, out);
    default: return scores_cpg<8, false>(group, levels, q, qsum, n, rows, stride, n_rows, out);
  }
}

void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc) {
  if (n / group > kMaxGroups) return ref::accumulate(spec, group, levels, p, rows, stride, n_rows, n, acc);
  const bool gs = spec.levels == Levels::Gaussian;
  switch (spec.bits) {
    case 2:
      return gs ? accumulate_k<2, true>(group, levels, p, rows, stride, n_rows, n, acc)
                : accumulate_k<2, false>(group, levels, p, rows, stride, n_rows, n, acc);
    case 3:
      return gs ? accumulate_k<3, true>(group, levels, p, rows, stride, n_rows, n, acc)
                : accumulate_k<3, false>(group, levels, p, rows, stride, n_rows, n, acc);
    case 4:
      return gs ? accumulate_k<4, true>(group, levels, p, rows, stride, n_rows, n, acc)
                : accumulate_k<4, false>(group, levels, p, rows, stride, n_rows, n, acc);
    default: return accumulate_k<8, false>(group, levels, p, rows, stride, n_rows, n, acc);
  }
}

#else  // no AVX2: the scalar references serve every spec

bool available(const QuantSpec&, int) {
  return false;
}
void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out) {
  ref::scores(spec, group, levels, q, qsum, n, rows, stride, n_rows, out);
}
void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc) {
  ref::accumulate(spec, group, levels, p, rows, stride, n_rows, n, acc);
}

#endif

}  // namespace akvq::kv::simd
