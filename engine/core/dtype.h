// Element types of weight tensors, numbered as in GGUF/ggml, and their block layouts.
#pragma once
#include <cstddef>
#include <cstdint>

namespace akvq {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,   // 32 values: fp16 d, 16 bytes; x = (q - 8) * d
  Q4_1 = 3,   // 32 values: fp16 d, fp16 m, 16 bytes; x = q * d + m
  Q8_0 = 8,   // 32 values: fp16 d, 32 int8; x = q * d
  Q4_K = 12,  // 256 values, 144 bytes
  Q6_K = 14,  // 256 values, 210 bytes
  BF16 = 30,
  // Read only to be converted at load (no matmul kernels; models/weights.h requantize_q8_0): the
  // types llama.cpp's Q4_K_M / Q4_K_S / Q5_K_M files use for some tensors.
  Q5_0 = 6,     // 32 values: fp16 d, 4 bytes of 5th bits, 16 bytes; x = (q - 16) * d
  Q5_1 = 7,     // 32 values: fp16 d, fp16 m, 4 + 16 bytes; x = q * d + m
  Q5_K = 13,    // 256 values, 176 bytes
  IQ4_NL = 20,  // 32 values: fp16 d, 16 bytes of indices into 16 non-linear levels
};

struct DTypeInfo {
  const char* name;
  int64_t block;       // values per block
  size_t block_bytes;  // bytes per block
  bool load_only = false;  // converted at load (DType comment above), never computed with
};

// Returns nullptr when `raw` is not a type this engine supports.
const DTypeInfo* dtype_info(uint32_t raw);
const DTypeInfo& dtype_info(DType t);
const char* dtype_name(uint32_t raw);  // "type 7" style text for unknown values

// Bytes of one row of n values (n must be a multiple of the block size).
inline size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& i = dtype_info(t);
  return static_cast<size_t>(n / i.block) * i.block_bytes;
}

}  // namespace akvq
