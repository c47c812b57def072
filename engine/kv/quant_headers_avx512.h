// The fp16 group headers of 16 packed KV rows as float vectors (AVX-512), shared by the float
// kernels (quant_avx512.cpp) and the table kernels (quant_lut_avx512.cpp). Empty without AVX-512
// kernels. Include it before AKVQ_AVX512_BEGIN: its function carries the AVX-512 target itself.
#pragma once
#include <cstdint>

#include "cpu/avx512_target.h"

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace akvq::kv::simd512 {

AKVQ_AVX512_BEGIN

// The scales and offsets of the rows at base + idx[t] (byte offsets; lanes outside k read nothing
// and give 0) as floats.
inline void headers16(const uint8_t* base, __m512i idx, __mmask16 k, __m512& sc, __m512& of) {
  const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, idx, base, 1);  // scale | offset << 16
  sc = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
  of = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16)));
}

AKVQ_AVX512_END

}  // namespace akvq::kv::simd512
#endif
