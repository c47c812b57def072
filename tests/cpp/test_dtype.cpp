// Block layouts of the supported GGUF types and the fp16 conversions.
#include <gtest/gtest.h>

#include <cmath>

#include "core/dtype.h"
#include "core/fp16.h"

using namespace akvq;

TEST(DType, BlockLayouts) {
  EXPECT_EQ(dtype_info(DType::Q4_0).block_bytes, 18u);
  EXPECT_EQ(dtype_info(DType::Q4_1).block_bytes, 20u);
  EXPECT_EQ(dtype_info(DType::Q8_0).block_bytes, 34u);
  EXPECT_EQ(dtype_info(DType::Q4_K).block_bytes, 144u);
  EXPECT_EQ(dtype_info(DType::Q6_K).block_bytes, 210u);
  EXPECT_EQ(row_bytes(DType::Q4_1, 576), 18u * 20u);
  EXPECT_EQ(dtype_info(10u), nullptr);  // Q2_K
  EXPECT_STREQ(dtype_name(10u), "type 10");
  // load-only types (converted at load): llama.cpp's block sizes
  EXPECT_EQ(dtype_info(DType::Q5_0).block_bytes, 22u);
  EXPECT_EQ(dtype_info(DType::Q5_1).block_bytes, 24u);
  EXPECT_EQ(dtype_info(DType::Q5_K).block_bytes, 176u);
  EXPECT_EQ(dtype_info(DType::IQ4_NL).block_bytes, 18u);
  EXPECT_TRUE(dtype_info(DType::Q5_K).load_only && !dtype_info(DType::Q4_K).load_only);
}

TEST(Fp16, RoundTripAllHalfs) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_fp16(f), h) << h;
  }
}

TEST(Fp16, RoundsToNearestEven) {
  // 1 + 2^-11 is exactly halfway between 1 and the next half: ties to even (1.0).
  EXPECT_EQ(f32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(f32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(f32_to_fp16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_fp16(-0.0f), 0x8000);
}
