// The fp16 group headers of 16 packed KV rows as float vectors (AVX-512), shared by the float
// kernels (quant_avx512.cpp) and the table kernels (quant_lut_avx512.cpp). Empty without AVX-512
// kernels. Include it before AKVQ_AVX512_BEGIN: its function carries the AVX-512 target itself.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cpu/avx512_target.h"

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace akvq::kv::simd512 {

AKVQ_AVX512_BEGIN

// The scales and offsets of the rows at base + idx[t] (byte offsets; lanes outside k read nothing
// and give 0) as floats.
// h: 16 header dwords (scale | offset << 16).
inline void split_headers(__m512i h, __m512& sc, __m512& of) {
  sc = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
  of = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16)));
}
inline void headers16(const uint8_t* base, __m512i idx, __mmask16 k, __m512& sc, __m512& of) {
  split_headers(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, idx, base, 1), sc, of);
}

// headers16 for 16 consecutive rows (row t at base + t·stride, all 16 present) without the
// gather, where stride is a multiple of 4 bytes and at most 64: the bytes from base to the last
// row's header are read as dword vectors (masked: nothing past that header is read), and each pair
// of vectors gives the headers in it by one two-table permute. Same values as headers16. The
// gather was 8% of the table scores' samples (perf, akvq2 decode at depth 8192 on a Zen 4).
struct Headers16 {
  __m512i idx[8];    // pair p: dword of row t's header within the pair ((t·s4 − 32p) mod 32)
  __mmask16 sel[8];  // pair p: the rows whose header lies in it
  __mmask16 ld[16];  // vector j: its dwords up to the last row's header
  int n_pair = 0;    // 0: not applicable (headers16_rows gathers)
};
// The plan for a stride (once per kernel call).
inline Headers16 headers16_plan(size_t stride) {
  Headers16 h;
  if (stride % 4 != 0 || stride == 0 || stride > 64) return h;
  const int s4 = static_cast<int>(stride / 4), n_dw = 15 * s4 + 1;
  h.n_pair = (n_dw + 31) / 32;
  for (int j = 0; j < 2 * h.n_pair; ++j) {
    const int valid = std::min(16, std::max(0, n_dw - 16 * j));
    h.ld[j] = static_cast<__mmask16>(valid >= 16 ? 0xffff : (1u << valid) - 1);
  }
  const __m512i row_dw = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(s4));  // dword of row t's header
  for (int p = 0; p < h.n_pair; ++p) {
    const __m512i d = _mm512_sub_epi32(row_dw, _mm512_set1_epi32(32 * p));
    h.idx[p] = _mm512_and_si512(d, _mm512_set1_epi32(31));
    h.sel[p] = _mm512_cmplt_epu32_mask(d, _mm512_set1_epi32(32));  // 0 <= d < 32 (d < 0 wraps above)
  }
  return h;
}
// headers16 of the rows at base + t·stride (the plan's stride), by the plan when k has all 16.
inline void headers16_rows(const Headers16& plan, const uint8_t* base, __m512i idx, __mmask16 k, __m512& sc,
                           __m512& of) {
  if (plan.n_pair == 0 || k != 0xffff) return headers16(base, idx, k, sc, of);
  __m512i h = _mm512_setzero_si512();
  for (int p = 0; p < plan.n_pair; ++p) {
    const __m512i a = _mm512_maskz_loadu_epi32(plan.ld[2 * p], base + 128 * p);
    const __m512i b = _mm512_maskz_loadu_epi32(plan.ld[2 * p + 1], base + 128 * p + 64);
    h = _mm512_mask_mov_epi32(h, plan.sel[p], _mm512_permutex2var_epi32(a, plan.idx[p], b));
  }
  split_headers(h, sc, of);
}

AKVQ_AVX512_END

}  // namespace akvq::kv::simd512
#endif
