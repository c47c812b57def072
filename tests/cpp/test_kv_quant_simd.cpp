// The SIMD attention kernels (RowCodec::scores_multi / accumulate_multi: NEON on 64-bit ARM, AVX2
// or AVX-512 on x86) against attention computed in double on the dequantized rows, on the shapes
// the kernels split into special cases: group sizes that are odd multiples of 8 (an 8-value step
// after the 16-value ones, or only that), 16 ... 128, rows of one group up to 1024 values (more
// groups than the accumulate kernels keep sums for), 1..4 queries, row counts around the row passes,
// padded strides, constant groups (scale 0); nothing written outside the outputs. And which specs
// the NEON build serves with kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kv/quant.h"
#include "kv_attention_check.h"

namespace {

using akvq::kv::kMaxQueries;
using akvq::kv::Levels;
using akvq::kv::QuantSpec;
using akvq::kv::RowCodec;

TEST(KvQuantSimd, OddGroupSizesAndTailsMatchDequantizedAttention) {
  std::mt19937 rng(31);
  int n_cases = 0;
  for (int bits : {2, 4}) {
    for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
      for (int group : {8, 16, 24, 32, 40, 48, 64, 128}) {
        for (int n : {group, 3 * group}) {
          for (int nq = 1; nq <= kMaxQueries; ++nq) {
            for (int n_rows : {1, 2, 3, 4, 5, 7, 9, 67}) {
              akvq::test::check_attention_multi(n, bits, group, lv, nq, n_rows, rng);
              ++n_cases;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(n_cases, 2 * 2 * 8 * 2 * kMaxQueries * 8);
}

TEST(KvQuantSimd, LongRowsMatchDequantizedAttention) {
  // 1024 values (the longest row the SIMD kernels serve): 8 groups of 128, or 128 groups of 8 (more
  // groups than accumulate keeps offset sums for: the reference serves accumulate there)
  std::mt19937 rng(37);
  for (int bits : {2, 4}) {
    for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
      for (int group : {8, 128}) {
        for (int nq : {1, 3}) akvq::test::check_attention_multi(1024, bits, group, lv, nq, 6, rng);
      }
    }
  }
}

TEST(KvQuantSimd, NeonServesTwoAndFourBits) {
#if defined(__aarch64__) && defined(__ARM_NEON)
  for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
    for (int bits : {2, 4}) {
      for (int group : {8, 32, 40, 64, 128}) {
        QuantSpec s;
        s.bits = bits, s.group = group, s.levels = lv;
        EXPECT_TRUE(RowCodec(s, 128 % group == 0 ? 128 : 2 * group).simd())
            << bits << " bits, group " << group << " " << akvq::kv::levels_name(lv);
      }
    }
  }
  for (int bits : {3, 8}) {  // the scalar references serve the other widths
    QuantSpec s;
    s.bits = bits;
    EXPECT_FALSE(RowCodec(s, 64).simd()) << bits;
  }
  QuantSpec s;
  EXPECT_FALSE(RowCodec(s, 2048).simd()) << "rows longer than simd::kMaxRow";
#else
  GTEST_SKIP() << "not a NEON build";
#endif
}

}  // namespace
