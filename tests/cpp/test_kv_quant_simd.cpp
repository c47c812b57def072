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

namespace {

using akvq::kv::kMaxQueries;
using akvq::kv::Levels;
using akvq::kv::QuantSpec;
using akvq::kv::RowCodec;

constexpr float kCanary = -3.5f;

void check_shape(int n, int bits, int group, Levels lv, int nq, int n_rows, std::mt19937& rng) {
  QuantSpec s;
  s.bits = bits, s.group = group, s.levels = lv, s.clip = bits == 2 ? 0.8f : 1.0f;
  const RowCodec codec(s, n);
  const size_t stride = codec.row_bytes() + static_cast<size_t>(n_rows % 3);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_rows) * n);
  for (auto& v : x) v = -0.2f + 1.3f * nd(rng);
  if (n_rows > 2) {
    for (int i = 0; i < group; ++i) x[static_cast<size_t>(n) + i] = 0.75f;  // row 1: a constant first group
  }
  std::vector<uint8_t> rows(stride * n_rows + 7, 0x3C);
  codec.quantize_rows(x.data(), n, n_rows, rows.data(), stride);
  std::vector<float> xh(x.size());
  for (int r = 0; r < n_rows; ++r) codec.dequantize(&rows[r * stride], &xh[static_cast<size_t>(r) * n]);

  const size_t qst = n + 4, qsst = codec.n_groups() + 1, ost = n_rows + 3, pst = n_rows + 1, ast = n + 8;
  std::vector<float> q(qst * nq), qsum(qsst * nq), p(pst * nq);
  for (auto& v : q) v = nd(rng);
  for (auto& v : p) v = u(rng);
  for (int j = 0; j < nq; ++j) codec.query_group_sums(&q[j * qst], &qsum[j * qsst]);
  std::vector<float> out(ost * nq, kCanary), acc(ast * nq, kCanary);
  for (int j = 0; j < nq; ++j) {
    for (int i = 0; i < n; ++i) acc[j * ast + i] = 0.25f * nd(rng);
  }
  const std::vector<float> acc0 = acc;
  codec.scores_multi(q.data(), qst, qsum.data(), qsst, nq, rows.data(), stride, n_rows, out.data(), ost);
  codec.accumulate_multi(p.data(), pst, nq, rows.data(), stride, n_rows, acc.data(), ast);

  const std::string what = "n " + std::to_string(n) + " bits " + std::to_string(bits) + " group " +
                           std::to_string(group) + " " + akvq::kv::levels_name(lv) + " nq " + std::to_string(nq) +
                           " rows " + std::to_string(n_rows) + (codec.simd() ? " simd" : " ref");
  for (int j = 0; j < nq; ++j) {
    for (int t = 0; t < n_rows; ++t) {
      double e = 0, mag = 0;
      for (int i = 0; i < n; ++i) {
        const double term = static_cast<double>(q[j * qst + i]) * xh[static_cast<size_t>(t) * n + i];
        e += term, mag += std::fabs(term);
      }
      ASSERT_NEAR(out[j * ost + t], e, 1e-5 * mag + 1e-6) << what << " score j=" << j << " t=" << t;
    }
    for (size_t t = n_rows; t < ost; ++t) ASSERT_EQ(out[j * ost + t], kCanary) << what << " wrote past row " << t;
    for (int i = 0; i < n; ++i) {
      double e = acc0[j * ast + i], mag = std::fabs(e);
      for (int t = 0; t < n_rows; ++t) {
        const double term = static_cast<double>(p[j * pst + t]) * xh[static_cast<size_t>(t) * n + i];
        e += term, mag += std::fabs(term);
      }
      ASSERT_NEAR(acc[j * ast + i], e, 1e-5 * mag + 1e-6) << what << " acc j=" << j << " i=" << i;
    }
    for (size_t i = n; i < ast; ++i) ASSERT_EQ(acc[j * ast + i], kCanary) << what << " wrote past channel " << i;
  }
  for (size_t b = stride * n_rows; b < rows.size(); ++b) ASSERT_EQ(rows[b], 0x3C) << what << " quantize wrote past";
}

TEST(KvQuantSimd, OddGroupSizesAndTailsMatchDequantizedAttention) {
  std::mt19937 rng(31);
  int n_cases = 0;
  for (int bits : {2, 4}) {
    for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
      for (int group : {8, 16, 24, 32, 40, 48, 64, 128}) {
        for (int n : {group, 3 * group}) {
          for (int nq = 1; nq <= kMaxQueries; ++nq) {
            for (int n_rows : {1, 2, 3, 4, 5, 7, 9, 67}) {
              check_shape(n, bits, group, lv, nq, n_rows, rng);
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
        for (int nq : {1, 3}) check_shape(1024, bits, group, lv, nq, 6, rng);
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
