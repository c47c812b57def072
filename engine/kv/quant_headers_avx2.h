// The fp16 group headers of 8 packed KV rows as float vectors (AVX2), shared by the float kernels
// (quant_avx2.cpp) and the table kernels (quant_lut_avx2.cpp). Empty without AKVQ_AVX2.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/simd.h"

#ifdef AKVQ_AVX2
namespace akvq::kv::simd {

// The fp16 scales and offsets of 8 rows (row0 + u·stride) as floats.
inline void headers8(const uint8_t* row0, size_t stride, __m256& sc, __m256& of) {
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                         _mm256_set1_epi32(static_cast<int>(stride)));
  const __m256i h = _mm256_i32gather_epi32(reinterpret_cast<const int*>(row0), idx, 1);  // scale | offset << 16
  // in each 128-bit lane the 4 scales, then the 4 offsets; then the scales of both lanes first
  const __m256i ctl = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                                       0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i y = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(h, ctl), _MM_SHUFFLE(3, 1, 2, 0));
  sc = _mm256_cvtph_ps(_mm256_castsi256_si128(y));
  of = _mm256_cvtph_ps(_mm256_extracti128_si256(y, 1));
}

}  // namespace akvq::kv::simd
#endif
