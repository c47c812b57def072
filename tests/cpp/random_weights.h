// Test helper: rows of random weights in any stored type, with finite fp16 scales (random bytes
// elsewhere: every code value occurs).
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"

namespace akvq::test {

// n_rows rows of n values (n a multiple of the type's block) of type t, row after row.
inline std::vector<uint8_t> random_weight_rows(DType t, int64_t n, int64_t n_rows, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  const DTypeInfo& info = dtype_info(t);
  const int64_t row_bytes = n / info.block * static_cast<int64_t>(info.block_bytes);
  std::vector<uint8_t> w(row_bytes * n_rows);
  for (auto& b : w) b = static_cast<uint8_t>(g());
  auto set16 = [&](size_t off) {
    const uint16_t h = f32_to_fp16(nd(g));
    w[off] = h & 0xff, w[off + 1] = h >> 8;
  };
  const int64_t n_blocks = n / info.block * n_rows;
  for (int64_t b = 0; b < n_blocks; ++b) {
    const size_t o = b * info.block_bytes;
    switch (t) {
      case DType::F32: {
        const float f = nd(g);
        std::memcpy(&w[o], &f, 4);
        break;
      }
      case DType::F16: set16(o); break;
      case DType::BF16: w[o + 1] = static_cast<uint8_t>(0x3c + g() % 4); break;
      case DType::Q4_0:
      case DType::Q8_0: set16(o); break;
      case DType::Q4_1:
      case DType::Q4_K: set16(o), set16(o + 2); break;
      case DType::Q6_K: set16(o + 208); break;
    }
  }
  return w;
}

}  // namespace akvq::test
