// Checks that the parity tests of test_ops_matmul.cpp exercise SIMD kernels where a SIMD ISA is
// compiled in (AVX2 on x86-64, NEON on aarch64, cpu/simd.h), instead of silently falling back to
// the scalar references; and that the fast activation quantization rounds ties like the reference.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "ops/matmul_detail.h"
#include "ops/qblocks.h"
#include "ops/ref.h"
#include "test_ops_util.h"

using namespace akvq;

namespace {

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0,
                           DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K};

}  // namespace

TEST(OpsSimd, EveryTypeHasTileKernelsWhenSimdIsCompiledIn) {
#if defined(AKVQ_AVX2) || defined(AKVQ_NEON)
  for (DType t : kAllTypes) {
    SCOPED_TRACE(dtype_info(t).name);
    const cpu::TileKernels* k = cpu::simd_kernels(t);
    ASSERT_NE(k, nullptr);
    EXPECT_TRUE(ops::detail::has_simd_kernels(t));
    // the preferred tiles and every smaller one (needed for the edges) exist
    for (int r = 1; r <= k->pref_r1; ++r) EXPECT_NE(k->fn[r - 1][0], nullptr) << r << "x1";
    for (int r = 1; r <= k->pref_r; ++r) {
      for (int tt = 1; tt <= k->pref_t; ++tt) EXPECT_NE(k->fn[r - 1][tt - 1], nullptr) << r << "x" << tt;
    }
  }
#else
  GTEST_SKIP() << "no SIMD ISA compiled in (scalar build)";
#endif
}

TEST(OpsSimd, ActivationQuantizationRoundsTiesToEven) {
  // Blocks whose largest value is 32767 have d = 1 and 1/d = 1, so x = k + 0.5 are exact ties.
  const int64_t n = 512;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(i % 61) + 0.5f;
    x[i] = (i % 3 == 0) ? -v : v;
  }
  for (int64_t b = 0; b < n / 32; ++b) x[b * 32 + b % 32] = (b % 2) ? -32767.0f : 32767.0f;
  std::vector<uint8_t> a(ops::act_q16_row_bytes(n)), r(a.size());
  cpu::quantize_row_q16(x.data(), a.data(), n);
  ops::ref::quantize_row_q16(x.data(), r.data(), n);
  ASSERT_EQ(a, r);
  EXPECT_EQ(ops::act_q16_d(a.data(), n)[0], 1.0f);
  EXPECT_EQ(ops::act_q16_qs(a.data())[1], 2);   // 1.5 -> 2
  EXPECT_EQ(ops::act_q16_qs(a.data())[2], 2);   // 2.5 -> 2
  EXPECT_EQ(ops::act_q16_qs(a.data())[3], -4);  // -3.5 -> -4
  EXPECT_EQ(ops::act_q16_qs(a.data())[6], -6);  // -6.5 -> -6
  test::expect_q16k_matches_reference(x.data(), n);
}
