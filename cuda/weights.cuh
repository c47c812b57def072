// Weight formats for the CUDA matmul and embedding kernels, as host/device functions (the CPU
// tests compare them with the engine's dequantization, which matches the gguf package's codecs).
// Block layouts are GGUF's (engine/ops/qblocks.h); the type ids are GGUF's tensor type ids.
// Every value is produced with the engine's rounding: each product and sum rounded to f32 on its
// own (no FMA), so dequant32 equals ops::dequantize_row bit for bit.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace akvq_cuda {

enum class WType : int { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30 };

AKVQ_HD bool wtype_known(int t) {
  return t == 0 || t == 1 || t == 2 || t == 3 || t == 8 || t == 12 || t == 14 || t == 30;
}

// Bytes of a row of n values (n a multiple of the type's block: 1, 32 or 256).
AKVQ_HD int64_t wtype_row_bytes(WType t, int64_t n) {
  switch (t) {
    case WType::F32: return 4 * n;
    case WType::F16:
    case WType::BF16: return 2 * n;
    case WType::Q4_0: return n / 32 * 18;
    case WType::Q4_1: return n / 32 * 20;
    case WType::Q8_0: return n / 32 * 34;
    case WType::Q4_K: return n / 256 * 144;
    case WType::Q6_K: return n / 256 * 210;
  }
  return 0;
}

AKVQ_HD int wtype_block(WType t) {
  return t == WType::Q4_K || t == WType::Q6_K ? 256 : (t == WType::F32 || t == WType::F16 || t == WType::BF16) ? 1 : 32;
}

AKVQ_HD float bf16_to_float(uint16_t h) {
  return bits_f32(static_cast<uint32_t>(h) << 16);
}

// Q4_K sub-block j (0..7): 6-bit scale and min from the packed scales[12].
AKVQ_HD void q4k_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// out[32] = values [32c, 32c + 32) of a row stored as type t.
AKVQ_HD void dequant32(WType t, const uint8_t* row, int64_t c, float* out) {
  switch (t) {
    case WType::F32: {
      const uint8_t* p = row + c * 128;
      for (int j = 0; j < 32; ++j)
        out[j] = bits_f32(p[4 * j] | (p[4 * j + 1] << 8) | (p[4 * j + 2] << 16) |
                          (static_cast<uint32_t>(p[4 * j + 3]) << 24));
      return;
    }
    case WType::F16:
    case WType::BF16: {
      const uint8_t* p = row + c * 64;
      for (int j = 0; j < 32; ++j) {
        const uint16_t h = static_cast<uint16_t>(p[2 * j] | (p[2 * j + 1] << 8));
        out[j] = t == WType::F16 ? half_to_float(h) : bf16_to_float(h);
      }
      return;
    }
    case WType::Q4_0: {
      const uint8_t* b = row + c * 18;
      const float d = half_to_float(static_cast<uint16_t>(b[0] | (b[1] << 8)));
      for (int j = 0; j < 16; ++j) {
        out[j] = mul_rn(d, static_cast<float>((b[2 + j] & 15) - 8));
        out[j + 16] = mul_rn(d, static_cast<float>((b[2 + j] >> 4) - 8));
      }
      return;
    }
    case WType::Q4_1: {
      const uint8_t* b = row + c * 20;
      const float d = half_to_float(static_cast<uint16_t>(b[0] | (b[1] << 8)));
      const float m = half_to_float(static_cast<uint16_t>(b[2] | (b[3] << 8)));
      for (int j = 0; j < 16; ++j) {
        out[j] = add_rn(mul_rn(d, static_cast<float>(b[4 + j] & 15)), m);
        out[j + 16] = add_rn(mul_rn(d, static_cast<float>(b[4 + j] >> 4)), m);
      }
      return;
    }
    case WType::Q8_0: {
      const uint8_t* b = row + c * 34;
      const float d = half_to_float(static_cast<uint16_t>(b[0] | (b[1] << 8)));
      for (int j = 0; j < 32; ++j) out[j] = mul_rn(d, static_cast<float>(static_cast<int8_t>(b[2 + j])));
      return;
    }
    case WType::Q4_K: {
      const uint8_t* b = row + (c / 8) * 144;
      const int j = static_cast<int>(c % 8), k = j / 2;
      const float d = half_to_float(static_cast<uint16_t>(b[0] | (b[1] << 8)));
      const float dmin = half_to_float(static_cast<uint16_t>(b[2] | (b[3] << 8)));
      int sc, mn;
      q4k_scale_min(b + 4, j, sc, mn);
      const float ds = mul_rn(d, static_cast<float>(sc)), ms = mul_rn(dmin, static_cast<float>(mn));
      const uint8_t* q = b + 16 + 32 * k;
      for (int l = 0; l < 32; ++l) {
        const int v = (j & 1) ? (q[l] >> 4) : (q[l] & 15);
        out[l] = sub_rn(mul_rn(ds, static_cast<float>(v)), ms);
      }
      return;
    }
    case WType::Q6_K: {
      const uint8_t* b = row + (c / 8) * 210;
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
      const float d = half_to_float(static_cast<uint16_t>(b[208] | (b[209] << 8)));
      const int jj = static_cast<int>(c % 8), h = jj / 4, k = jj % 4;
      for (int l = 0; l < 32; ++l) {
        const int i = 32 * jj + l;
        const int lo = (ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
        const int hi = (qh[32 * h + l] >> (2 * k)) & 3;
        const float ds = mul_rn(d, static_cast<float>(scales[i / 16]));
        out[l] = mul_rn(ds, static_cast<float>((lo | (hi << 4)) - 32));
      }
      return;
    }
  }
}

}  // namespace akvq_cuda
