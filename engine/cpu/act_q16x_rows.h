// The Q16X row layout (ops/qblocks.h) around a block quantizer, shared by the portable path
// (act_quant_q16x.cpp) and the AVX-512 one (act_quant_q16x_avx512.cpp), which differ only in how
// a block's integers are made.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

struct Q16XBlock {
  float d;      // the block's scale
  int32_t sum;  // the sum of its integers q
};

// out = the Q16X row of n values (n a multiple of 32) for weights of type `weight`:
// block(b, h_lo, h_hi, l_lo, l_hi) quantizes block b and stores the 16 h bytes of its values
// 0..15 at h_lo and of 16..31 at h_hi (l likewise: left 0 with 8-bit levels), then returns its
// scale and integer sum; the row's missing blocks, per-lane scales and offset lanes are set here.
template <class Block>
inline void write_q16x_row(uint8_t* out, int64_t n, DType weight, Block&& block) {
  const bool offset_high = weight == DType::Q8_0;  // h + 128: the unsigned operand there
  const int64_t nb = n / ops::kQK;
  const int64_t ng = (n + ops::kQ16XGroup - 1) / ops::kQ16XGroup;
  for (int64_t g = 0; g < ng; ++g) {
    uint8_t* grp = out + g * ops::kQ16XGroupBytes;
    uint8_t* h = grp;
    uint8_t* l = grp + 128;
    float* d16 = reinterpret_cast<float*>(grp + 256);
    uint8_t* o16 = grp + 320;
    // The bytes no block writes are zeros: l with 8-bit levels, o16's other lanes. Fixed sizes,
    // stored inline. A call zeroing the whole row first (then writing it) made the activation rows
    // of a SmolLM2 batch-8 step 4.5% of its samples, 1.9% this way (perf, bench/RESULTS.md).
    std::memset(l, 0, 128);
    std::memset(o16, 0, 64);
    for (int k = 0; k < 4; ++k) {
      const int64_t b = 4 * g + k;
      if (b >= nb) {  // missing block: h must still read as 0 (Q8_0: 128), d as 0
        std::memset(h + 16 * k, offset_high ? 128 : 0, 16);
        std::memset(h + 64 + 16 * k, offset_high ? 128 : 0, 16);
        std::memset(d16 + 4 * k, 0, 16);
        continue;
      }
      const Q16XBlock q = block(b, h + 16 * k, h + 64 + 16 * k, l + 16 * k, l + 64 + 16 * k);
      for (int j = 0; j < 4; ++j) d16[4 * k + j] = q.d;
      if (weight == DType::Q4_0) {
        const int32_t off = -8 * q.sum;  // (nibble - 8) folded into the integer dot
        std::memcpy(o16 + 16 * k, &off, 4);
      } else if (weight == DType::Q4_1) {
        const float s = q.d * static_cast<float>(q.sum);  // s of the Q16 row
        std::memcpy(o16 + 16 * k, &s, 4);
      }
    }
  }
}

}  // namespace akvq::cpu
