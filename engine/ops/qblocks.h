// Byte layouts of the quantized weight blocks (ggml/GGUF spec) and of the 16-bit activation
// formats that the quantized matmul uses for its right-hand side.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace akvq::ops {

constexpr int kQK = 32;    // values per block of Q4_0 / Q4_1 / Q8_0
constexpr int kQKK = 256;  // values per super-block of the K-quants

// ---- weight blocks (packed, as stored in the file) ----
struct BlockQ4_0 {  // x = (q - 8) * d; value j in the low nibble of qs[j], j+16 in the high one
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {  // x = q * d + m, nibbles as Q4_0
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ8_0 {  // x = q * d
  uint16_t d;
  int8_t qs[32];
};
// Q4_K: 8 sub-blocks of 32 with 6-bit scale and min each, packed into scales[12]:
// for j < 4: sc = s[j] & 63, mn = s[j+4] & 63;
// for j >= 4: sc = (s[j+4] & 15) | ((s[j-4] >> 6) << 4), mn = (s[j+4] >> 4) | ((s[j] >> 6) << 4).
// Value 64k + l (l < 32) = d*sc[2k]*(qs[32k+l] & 15) - dmin*mn[2k];
// value 64k + 32 + l = d*sc[2k+1]*(qs[32k+l] >> 4) - dmin*mn[2k+1].
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
// Q6_K: 16 groups of 16 with int8 scales. For half h (values 128h..128h+127) and l < 32:
// q(128h + 32k + l) = ((ql[64h + 32(k&1) + l] >> 4(k>>1)) & 15) | (((qh[32h + l] >> 2k) & 3) << 4)
// x = d * scales[i/16] * (q - 32).
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
// Load-only types (core/dtype.h), dequantized at load. Q5_0 / Q5_1: value j (< 16) is the low
// nibble of qs[j], value j + 16 the high nibble of qs[j]; bit j of qh (little-endian 32 bits) is
// value j's fifth bit.
struct BlockQ5_0 {  // x = (q - 16) * d
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ5_1 {  // x = q * d + m
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
// Q5_K: Q4_K's scales and mins (q4k_scale_min) with a fifth bit per value: for chunk k (values
// 64k..64k+63) and l < 32, value 64k + l = d*sc[2k]*((qs[32k+l] & 15) + 16*((qh[l] >> 2k) & 1)) -
// dmin*mn[2k], value 64k + 32 + l likewise with the high nibble, bit 2k + 1 and sub-block 2k + 1.
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockIQ4_NL {  // x = d * kIQ4NLLevels[index], indices packed as Q4_0's nibbles
  uint16_t d;
  uint8_t qs[16];
};
// IQ4_NL's levels (ggml's kvalues_iq4nl).
constexpr int8_t kIQ4NLLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 layout");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 layout");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K layout");
static_assert(sizeof(BlockIQ4_NL) == 18, "IQ4_NL layout");
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 layout");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 layout");
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 layout");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K layout");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K layout");

inline void q4k_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// The 8 scales and mins of q4k_scale_min at once, as bytes j of sc and mn (branch-free): with the
// 12 bytes read as little-endian words w0, w1, w2, bytes j of
//   sc[0..3] = w0 & 63,  mn[0..3] = w1 & 63,
//   sc[4..7] = (w2 & 15) | (w0 >> 6) << 4,  mn[4..7] = (w2 >> 4 & 15) | (w1 >> 6) << 4.
inline void q4k_scales_mins(const uint8_t* s, uint64_t& sc, uint64_t& mn) {
  uint32_t w0, w1, w2;
  std::memcpy(&w0, s, 4);
  std::memcpy(&w1, s + 4, 4);
  std::memcpy(&w2, s + 8, 4);
  const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
  const uint32_t s03 = w0 & lo6, m03 = w1 & lo6;
  const uint32_t s47 = (w2 & lo4) | (((w0 >> 6) & lo2) << 4);
  const uint32_t m47 = ((w2 >> 4) & lo4) | (((w1 >> 6) & lo2) << 4);
  sc = s03 | uint64_t{s47} << 32;
  mn = m03 | uint64_t{m47} << 32;
}

// ---- activation formats (one row of x quantized once per matmul) ----
// 16-bit activations: the rounding of x is ~2^-16 of the block's largest value, far below the
// weights' own quantization error (8-bit activations measurably moved the logits of real models).
//
// Q16, the right-hand side of Q4_0 / Q4_1 / Q8_0. Per block b of 32 values:
//   d_b = amax_b / 32767 (f32), q = clamp(round-half-even(x * (1/d_b)), -32767, 32767) (int16),
//   s_b = d_b * sum(q) (f32; the integer sum is exact), used for the offset term of Q4_0 / Q4_1.
// Blocks with amax < kActTiny are stored as zeros (d = 0, q = 0), so that 1/d stays finite.
// One row of n values (n a multiple of 32) is stored as int16 qs[n], then float d[n/32], then
// float s[n/32]: the int16 blocks are 64 bytes each and stay aligned when the row is.
constexpr float kActTiny = 1e-30f;
constexpr int kActQ16Max = 32767;  // 16-bit activations (default)
constexpr int kActQ8Max = 127;     // 8-bit activations (TensorView::act_bits == 8): same format
constexpr int64_t act_q16_row_bytes(int64_t n) {
  return 2 * n + 8 * (n / kQK);
}
inline const int16_t* act_q16_qs(const void* row) {
  return static_cast<const int16_t*>(row);
}
inline const float* act_q16_d(const void* row, int64_t n) {
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + 2 * n);
}
inline const float* act_q16_s(const void* row, int64_t n) {
  return act_q16_d(row, n) + n / kQK;
}

// Q16X, the right-hand side of the AVX-512 kernels for Q4_0 / Q4_1 / Q8_0: the Q16 integers q
// (the same values as above) split into bytes, q = 256 * h + l with h = q >> 8 (-128..127) and
// l = q & 255 (0..255), so that the byte dot instruction (u8 x s8 -> s32, four products per lane)
// computes the exact 16-bit product in two passes. Values are taken in groups of 4 blocks
// (128 values; the missing blocks of a row's last group are zeros); group g is kQ16XGroupBytes:
//   h[128]: byte 16k + i = h of value i of block 4g+k, byte 64 + 16k + i = h of value 16 + i
//           (k < 4, i < 16): the order of two 4-bit weight registers (low nibbles, high nibbles);
//           for Q8_0 weights (the signed operand there): h + 128 as uint8
//   l[128]: l, same order (uint8)
//   d16[16] f32: lane j = d of block 4g + j/4 (the lanes of the byte dot's int32 results)
//   o16[16]: lane 4k = the offset term of block 4g+k, other lanes 0: int32 -8 * sum(q) (folds
//            Q4_0's -8 into the integer dot), f32 s = d * sum(q) for Q4_1; unused for Q8_0.
// A row of n values is ceil(n / 128) groups (64-byte aligned when the row is).
constexpr int64_t kQ16XGroup = 128;
constexpr int64_t kQ16XGroupBytes = 384;
constexpr int64_t act_q16x_row_bytes(int64_t n) {
  return (n + kQ16XGroup - 1) / kQ16XGroup * kQ16XGroupBytes;
}

// Q16K, the right-hand side of the K-quants. Per super-block of 256 values: d = amax / 32767,
// q as above; sums[j] = sum of q over values 32j..32j+31 (for the Q4_K min term).
struct ActQ16K {
  float d;
  int32_t pad[7];   // keeps qs 64-byte aligned within the block
  int32_t sums[8];  // |sums[j]| <= 32 * 32767
  int16_t qs[256];
};
static_assert(sizeof(ActQ16K) == 576, "ActQ16K layout");

// Q8K rows (cpu/qgemm.h: ActFormat::Q8K), the right-hand side of the AVX-512 Q4_K tiles with 8-bit levels
// (TensorView::act_bits == 8): the ActQ16K integers of qmax = 127 as bytes, in the order of the
// Q4_K nibbles. 64-byte chunk c = 2m + h (m, h < 2) holds sub-block 4m + h (bytes 0..31) and
// sub-block 4m + 2 + h (bytes 32..63): chunk 2m pairs with the low nibbles of the weights'
// qs[64m .. 64m + 63], chunk 2m + 1 with their high nibbles.
struct ActQ8K {
  float d;
  float pad[7];    // 0
  float ms[8];     // d * sums[j] (f32 of the exact integer sum), for the Q4_K min term
  int8_t qs[256];  // the chunks above
};
static_assert(sizeof(ActQ8K) == 320, "ActQ8K layout");

// Q16XK rows (cpu/qgemm.h: ActFormat::Q16XK), the right-hand side of the AVX-512 Q4_K and Q6_K
// tiles in the R16B layout: the ActQ16K integers q of a super-block split into bytes as in Q16X,
// q = 256 h + l (h = q >> 8 signed, l = q & 255), both in value order, so that the 4 bytes of
// values 4i .. 4i + 3 meet 4 weight values in one byte dot. With 8-bit levels (qmax <= 127) h = q
// and l = 0 (the tiles skip the l pass). sums[j]: the exact integer sum of values 32j .. 32j + 31
// as f32 (|sum| <= 32 * 32767 < 2^24), for the Q4_K min term; off16[i] = -32 * the integer sum of
// values 16i .. 16i + 15 (Q6_K's offset, folded into its integer dot).
struct ActQ16XK {
  float d;
  float pad[7];       // 0
  float sums[8];      // f32 of ActQ16K::sums
  int8_t h[256];      // value order
  uint8_t l[256];     // value order
  int32_t off16[16];  // |off16| <= 32 * 16 * 32767 < 2^24
};
static_assert(sizeof(ActQ16XK) == 640, "ActQ16XK layout");

}  // namespace akvq::ops
