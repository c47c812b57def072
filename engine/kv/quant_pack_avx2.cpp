// AVX2 packing of KV rows (quantize), bit-identical to ref::quantize_row: the group headers come
// from the shared ref::group_header; codes are computed 8 values at a time — uniform:
// round((x − o) / s) clamped to [0, 2^b − 1] (NaN -> 0), Gaussian: the number of Lloyd–Max
// midpoints below (x − o) / s — and packed LSB-first with one variable shift per lane and a
// horizontal sum (the shifted codes do not overlap, so the sum is their OR): 8 codes = b bytes.
#include <cstring>

#include "core/fp16.h"
#include "cpu/simd.h"
#include "kv/quant.h"

namespace akvq::kv::simd {

#ifdef AKVQ_AVX2

namespace {

// Writes the 8 b-bit codes of c (int32 lanes) as b bytes at p.
template <int B>
inline void pack8(__m256i c, uint8_t* p) {
  if constexpr (B == 8) {
    const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w16, w16));
  } else {
    const __m256i sh = _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B);
    const uint32_t w = static_cast<uint32_t>(cpu::hsum_i32(_mm256_sllv_epi32(c, sh)));
    std::memcpy(p, &w, B);
  }
}

template <int B, bool kGauss>
void quantize_row_k(const QuantSpec& spec, int group, const float* levels, const float* x, int n, uint8_t* out) {
  const int ng = n / group;
  uint8_t* codes = out + 4 * ng;
  constexpr int K = 1 << B;
  float thr[K > 1 ? K - 1 : 1];  // Lloyd–Max midpoints, as ref's nearest() computes them
  if constexpr (kGauss) {
    for (int i = 0; i + 1 < K; ++i) thr[i] = 0.5f * (levels[i] + levels[i + 1]);
  }
  for (int g = 0; g < ng; ++g) {
    const float* xg = x + g * group;
    const ref::GroupHeader h = ref::group_header(spec, xg, group);
    std::memcpy(out + 4 * g, &h.scale, 2);
    std::memcpy(out + 4 * g + 2, &h.offset, 2);
    uint8_t* cg = codes + static_cast<size_t>(g) * group * B / 8;
    const float s = fp16_to_f32(h.scale), o = fp16_to_f32(h.offset);
    if (s == 0.0f) {
      std::memset(cg, 0, static_cast<size_t>(group) * B / 8);
      continue;
    }
    const __m256 vs = _mm256_set1_ps(s), vo = _mm256_set1_ps(o);
    for (int i = 0; i < group; i += 8) {
      const __m256 z = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(xg + i), vo), vs);
      __m256i c;
      if constexpr (kGauss) {
        c = _mm256_setzero_si256();
        for (int t = 0; t + 1 < K; ++t) {  // compare masks are -1: subtracting counts them
          c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(z, _mm256_set1_ps(thr[t]), _CMP_GT_OQ)));
        }
      } else {
        __m256 v = _mm256_round_ps(z, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_max_ps(v, _mm256_setzero_ps());  // NaN -> 0 (max returns its second operand)
        v = _mm256_min_ps(v, _mm256_set1_ps(static_cast<float>(K - 1)));
        c = _mm256_cvttps_epi32(v);
      }
      pack8<B>(c, cg + i * B / 8);
    }
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
    case 3:
      return gs ? quantize_rows_k<3, true>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride)
                : quantize_rows_k<3, false>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride);
    case 4:
      return gs ? quantize_rows_k<4, true>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride)
                : quantize_rows_k<4, false>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride);
    default: return quantize_rows_k<8, false>(spec, group, levels, x, x_stride, n_rows, n, out, out_stride);
  }
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (quant_pack_neon.cpp): the scalar reference

void quantize_rows(const QuantSpec& spec, int group, const float* levels, const float* x, int64_t x_stride,
                   int64_t n_rows, int n, uint8_t* out, size_t out_stride) {
  for (int64_t r = 0; r < n_rows; ++r) ref::quantize_row(spec, group, levels, x + r * x_stride, n, out + r * out_stride);
}

#endif

}  // namespace akvq::kv::simd
