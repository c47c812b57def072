// Walsh–Hadamard transform: against an explicit dense Sylvester Hadamard product (double),
// orthonormality, self-inverse, block-diagonal layout for head_dim not a power of two.
#include <akvq/error.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kv/wht.h"

namespace {

using akvq::kv::wht;
using akvq::kv::wht_ref;

// Dense normalized H for size d: block-diagonal Sylvester blocks, largest block first.
std::vector<double> dense_h(int d) {
  std::vector<double> h(static_cast<size_t>(d) * d, 0.0);
  int off = 0;
  for (int m = 1 << 20; m >= 1; m >>= 1) {
    if ((d & m) == 0) continue;
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < m; ++j) {
        // Sylvester: H[i][j] = (-1)^popcount(i & j)
        const int sign = __builtin_popcount(static_cast<unsigned>(i & j)) & 1 ? -1 : 1;
        h[static_cast<size_t>(off + i) * d + off + j] = sign / std::sqrt(static_cast<double>(m));
      }
    }
    off += m;
  }
  return h;
}

std::vector<float> randv(int d, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(d);
  for (auto& v : x) v = nd(rng);
  x[0] *= 30.0f;  // an outlier channel, as in real K
  return x;
}

const int kDims[] = {1, 2, 3, 4, 7, 8, 16, 24, 32, 48, 64, 80, 96, 100, 112, 128, 256, 257};

TEST(Wht, EqualsDenseHadamardProduct) {
  std::mt19937 rng(1);
  for (int d : kDims) {
    const auto h = dense_h(d);
    for (int rep = 0; rep < 3; ++rep) {
      const auto x = randv(d, rng);
      std::vector<float> a = x, b = x;
      wht(a.data(), d);
      wht_ref(b.data(), d);
      double norm = 0;
      for (float v : x) norm += static_cast<double>(v) * v;
      for (int i = 0; i < d; ++i) {
        double e = 0;
        for (int j = 0; j < d; ++j) e += h[static_cast<size_t>(i) * d + j] * x[j];
        const double tol = 1e-6 * std::sqrt(norm) + 1e-7;
        EXPECT_NEAR(a[i], e, tol) << "simd d=" << d << " i=" << i;
        EXPECT_NEAR(b[i], e, tol) << "ref d=" << d << " i=" << i;
      }
    }
  }
}

TEST(Wht, BlocksOfNonPowerOfTwo) {
  EXPECT_EQ(akvq::kv::wht_first_block(80), 64);
  EXPECT_EQ(akvq::kv::wht_first_block(96), 64);
  EXPECT_EQ(akvq::kv::wht_first_block(64), 64);
  EXPECT_EQ(akvq::kv::wht_first_block(7), 4);
  // 80 = 64 + 16: a unit vector in the last 16 channels stays inside them.
  std::vector<float> x(80, 0.0f);
  x[70] = 1.0f;
  wht(x.data(), 80);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(x[i], 0.0f);
  for (int i = 64; i < 80; ++i) EXPECT_NEAR(std::fabs(x[i]), 0.25f, 1e-7f);
  // and one in the first 64 spreads over exactly those.
  std::fill(x.begin(), x.end(), 0.0f);
  x[3] = 1.0f;
  wht(x.data(), 80);
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(std::fabs(x[i]), 0.125f, 1e-7f);
  for (int i = 64; i < 80; ++i) EXPECT_EQ(x[i], 0.0f);
}

TEST(Wht, OrthonormalAndSelfInverse) {
  std::mt19937 rng(2);
  for (int d : kDims) {
    // Columns of H (transform of unit vectors): H·Hᵀ = I and H symmetric.
    std::vector<float> m(static_cast<size_t>(d) * d, 0.0f);
    for (int j = 0; j < d; ++j) {
      m[static_cast<size_t>(j) * d + j] = 1.0f;
      wht(&m[static_cast<size_t>(j) * d], d);  // row j of m = H e_j = column j of H
    }
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j < d; ++j) {
        double dot = 0;
        for (int k = 0; k < d; ++k)
          dot += static_cast<double>(m[static_cast<size_t>(i) * d + k]) * m[static_cast<size_t>(j) * d + k];
        ASSERT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-6) << "d=" << d << " " << i << "," << j;
        ASSERT_NEAR(m[static_cast<size_t>(i) * d + j], m[static_cast<size_t>(j) * d + i], 1e-7);
      }
    }
    const auto x = randv(d, rng);
    auto y = x;
    wht(y.data(), d);
    double n0 = 0, n1 = 0;
    for (int i = 0; i < d; ++i) n0 += static_cast<double>(x[i]) * x[i], n1 += static_cast<double>(y[i]) * y[i];
    EXPECT_NEAR(n1, n0, 1e-5 * n0) << "d=" << d;
    wht(y.data(), d);
    for (int i = 0; i < d; ++i) EXPECT_NEAR(y[i], x[i], 1e-5f * (1.0f + std::fabs(x[0]))) << "d=" << d;
  }
}

TEST(Wht, RowsWithStrideLeaveThePaddingAlone) {
  std::mt19937 rng(3);
  const int d = 80, stride = 90, n_rows = 5;
  std::vector<float> buf(static_cast<size_t>(stride) * n_rows);
  std::normal_distribution<float> nd;
  for (auto& v : buf) v = nd(rng);
  auto expect = buf;
  for (int r = 0; r < n_rows; ++r) wht_ref(&expect[static_cast<size_t>(r) * stride], d);
  akvq::kv::wht_rows(buf.data(), n_rows, d, stride);
  for (size_t i = 0; i < buf.size(); ++i) EXPECT_NEAR(buf[i], expect[i], 1e-5f) << i;
}

TEST(Wht, BadSizesThrow) {
  float x[4] = {};
  EXPECT_THROW(wht(x, 0), akvq::InvalidArgument);
  EXPECT_THROW(akvq::kv::wht_rows(x, 1, 4, 2), akvq::InvalidArgument);
}

}  // namespace
