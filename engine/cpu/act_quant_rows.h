// ISA-independent part of the 16-bit activation quantization (act_quant.cpp: AVX2,
// act_quant_neon.cpp: NEON): the row layouts of ops/qblocks.h around one SIMD block quantizer
//   Block(x, n, q, sums32) -> d: x[n] (n a multiple of 32) -> q[n] int16 with one scale d;
//                                sums32[k] = sum of q[32k .. 32k + 31]
#pragma once
#include <cstdint>
#include <cstring>

#include "ops/qblocks.h"

namespace akvq::cpu {

using QuantizeBlock16 = float (*)(const float* x, int n, int16_t* q, int32_t* sums32, int qmax);

// x[n] -> a Q16 row (n / 32 blocks: int16 qs[n], then f32 d[n / 32], then f32 s[n / 32]).
template <QuantizeBlock16 Block>
inline void quantize_row_q16_with(const float* x, void* out_row, int64_t n, int qmax) {
  int16_t* qs = static_cast<int16_t*>(out_row);
  float* d = const_cast<float*>(ops::act_q16_d(out_row, n));
  float* s = d + n / ops::kQK;
  for (int64_t b = 0; b < n / ops::kQK; ++b) {
    int32_t sum;
    d[b] = Block(x + b * ops::kQK, ops::kQK, qs + b * ops::kQK, &sum, qmax);
    s[b] = d[b] * static_cast<float>(sum);
  }
}

// x[n] -> ActQ16K[n / 256].
template <QuantizeBlock16 Block>
inline void quantize_row_q16k_with(const float* x, void* out_act, int64_t n, int qmax) {
  ops::ActQ16K* out = static_cast<ops::ActQ16K*>(out_act);
  for (int64_t b = 0; b < n / ops::kQKK; ++b) {
    std::memset(out[b].pad, 0, sizeof(out[b].pad));
    out[b].d = Block(x + b * ops::kQKK, ops::kQKK, out[b].qs, out[b].sums, qmax);
  }
}

}  // namespace akvq::cpu
