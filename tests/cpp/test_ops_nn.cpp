// Parity of the vision-transformer ops (LayerNorm, bias, GELU, quick GELU, non-causal attention)
// with the scalar references, odd sizes included, on 1 and 3 threads; batch invariance.
// Tolerances (relative to the magnitude of the result unless stated):
//  * layer_norm: 2e-6 relative + 3e-7 (|x| + |mean|) rstd |w| — f32 sums over n <= 1001
//    (8 lanes, two passes) vs double, and the f32 rounding of x - mean.
//  * add_bias: exact (one f32 addition either way).
//  * gelu: 1e-6 — erfc fit (< 1.2e-7 relative) and the exp polynomial (< 3e-7), f32 products;
//    plus 1e-7 x^2 in the far tails, where the f32 rounding of the exp argument (-x^2 / 2, or
//    -1.702 x) dominates the (tiny) result.
//  * quick_gelu: 1e-6 — exp polynomial, one division; same tail term.
//  * attention: 2e-5 of max|v| — f32 dot products over head_dim, exp polynomial, f32 sums over
//    seq_len <= 300 vs double everywhere.
#include <gtest/gtest.h>

#include <akvq/error.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cpu/thread_pool.h"
#include "ops/ops.h"
#include "ops/ref.h"
#include "test_ops_util.h"

using namespace akvq;

namespace {
const int64_t kSizes[] = {1, 3, 8, 15, 16, 17, 64, 100, 576, 1001};
}

TEST(OpsNn, LayerNorm) {
  std::mt19937 rng(11);
  for (int nth : {1, 3}) {
    cpu::ThreadPool pool(nth);
    for (int64_t n : kSizes) {
      for (int variant = 0; variant < 3; ++variant) {  // weight+bias, weight only, neither
        const int64_t n_tok = 37;
        auto x = test::random_floats(n * n_tok, rng, 2.0f);
        for (int64_t i = 0; i < n * n_tok; ++i) x[i] += 5.0f;  // an offset: mean matters
        auto w = test::random_floats(n, rng), b = test::random_floats(n, rng);
        const float* wp = variant < 2 ? w.data() : nullptr;
        const float* bp = variant < 1 ? b.data() : nullptr;
        std::vector<float> y(x.size()), yr(x.size());
        ops::layer_norm(x.data(), wp, bp, n_tok, n, 1e-5f, y.data(), pool);
        ops::ref::layer_norm(x.data(), wp, bp, n_tok, n, 1e-5f, yr.data());
        for (int64_t t = 0; t < n_tok; ++t) {
          double mean = 0, var = 0;
          for (int64_t i = 0; i < n; ++i) mean += x[t * n + i];
          mean /= n;
          for (int64_t i = 0; i < n; ++i) var += (x[t * n + i] - mean) * (x[t * n + i] - mean);
          const double rstd = 1.0 / std::sqrt(var / n + 1e-5);
          for (int64_t i = 0; i < n; ++i) {
            // f32 rounding of x - mean (scale |x| + |mean|) times rstd and w, plus the f32 steps
            const int64_t j = t * n + i;
            const double wi = wp ? std::fabs(wp[i]) : 1.0;
            const double tol = 2e-6 * std::fabs(yr[j]) + 3e-7 * wi * (std::fabs(x[j]) + std::fabs(mean)) * rstd;
            ASSERT_NEAR(y[j], yr[j], tol) << n << " " << j;
          }
        }
        ops::layer_norm(x.data(), wp, bp, n_tok, n, 1e-5f, x.data(), pool);  // in place
        for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(x[i], y[i]);
      }
    }
  }
}

TEST(OpsNn, AddBias) {
  std::mt19937 rng(12);
  cpu::ThreadPool pool(3);
  for (int64_t n : kSizes) {
    const int64_t n_tok = 50;
    auto x = test::random_floats(n * n_tok, rng), b = test::random_floats(n, rng);
    auto xr = x;
    ops::add_bias(x.data(), b.data(), n_tok, n, pool);
    ops::ref::add_bias(xr.data(), b.data(), n_tok, n);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], xr[i]);
  }
}

TEST(OpsNn, GeluAndQuickGelu) {
  std::mt19937 rng(13);
  for (int nth : {1, 3}) {
    cpu::ThreadPool pool(nth);
    for (int64_t n : kSizes) {
      const int64_t n_tok = 40;
      auto x = test::random_floats(n * n_tok, rng, 3.0f);
      x[0] = -30.0f, x[n * n_tok - 1] = 12.0f;  // tails
      if (n * n_tok > 4) x[1] = 0.0f, x[2] = -1e-20f, x[3] = -9.0f;
      for (bool quick : {false, true}) {
        auto y = x, yr = x;
        if (quick) {
          ops::quick_gelu(y.data(), n_tok, n, pool);
          ops::ref::quick_gelu(yr.data(), n * n_tok);
        } else {
          ops::gelu(y.data(), n_tok, n, pool);
          ops::ref::gelu(yr.data(), n * n_tok);
        }
        for (size_t i = 0; i < y.size(); ++i) {
          const double rel = 1e-6 + 1e-7 * x[i] * x[i];  // + the f32 rounding of the exp argument
          ASSERT_NEAR(y[i], yr[i], rel * std::fabs(yr[i]) + 1e-30) << (quick ? "quick " : "erf ") << x[i];
        }
      }
    }
  }
}

TEST(OpsNn, EveryActivation) {
  std::mt19937 rng(17);
  cpu::ThreadPool pool(3);
  for (auto a : {ops::Activation::Gelu, ops::Activation::GeluTanh, ops::Activation::QuickGelu, ops::Activation::Silu,
                 ops::Activation::Relu}) {
    ops::Activation back;
    ASSERT_TRUE(ops::activation_from_name(ops::activation_name(a), &back));
    EXPECT_EQ(back, a);
    for (int64_t n : kSizes) {
      const int64_t n_tok = 9;
      auto x = test::random_floats(n * n_tok, rng, 3.0f);
      x[0] = -25.0f, x[n * n_tok - 1] = 11.0f;
      auto y = x, yr = x;
      ops::activation(a, y.data(), n_tok, n, pool);
      ops::ref::activation(a, yr.data(), n * n_tok);
      for (size_t i = 0; i < y.size(); ++i) {
        const double rel = 1e-6 + 1e-7 * x[i] * x[i];  // as for gelu (tanh form: exp of ~1.6 x + 0.07 x^3)
        const double tail = a == ops::Activation::GeluTanh ? 1e-7 * std::fabs(x[i] * x[i] * x[i]) : 0.0;
        ASSERT_NEAR(y[i], yr[i], (rel + tail) * std::fabs(yr[i]) + 1e-30) << ops::activation_name(a) << " " << x[i];
      }
    }
  }
  ops::Activation a;
  EXPECT_FALSE(ops::activation_from_name("gelu_new", &a));
}

TEST(OpsNn, GeluKnownValues) {
  cpu::ThreadPool pool(1);
  float x[4] = {1.0f, -1.0f, 2.0f, 0.5f};
  ops::gelu(x, 1, 4, pool);
  EXPECT_NEAR(x[0], 0.8413447460685429, 2e-7);  // Φ(1)
  EXPECT_NEAR(x[1], -0.15865525393145707, 2e-7);
  EXPECT_NEAR(x[2], 1.9544997361036416, 4e-7);
  EXPECT_NEAR(x[3], 0.34573123063700656, 1e-7);
  float z[3] = {1.0f, 1.0f, -1.0f};
  ops::activation(ops::Activation::GeluTanh, z, 1, 1, pool);
  ops::activation(ops::Activation::Silu, z + 1, 1, 1, pool);
  ops::activation(ops::Activation::Relu, z + 2, 1, 1, pool);
  EXPECT_NEAR(z[0], 0.8411919906082768, 2e-7);  // 0.5 (1 + tanh(sqrt(2/pi) 1.044715))
  EXPECT_NEAR(z[1], 0.7310585786300049, 2e-7);  // sigmoid(1)
  EXPECT_EQ(z[2], 0.0f);
  float y[2] = {1.0f, -2.0f};
  ops::quick_gelu(y, 1, 2, pool);
  EXPECT_NEAR(y[0], 1.0 / (1.0 + std::exp(-1.702)), 2e-7);
  EXPECT_NEAR(y[1], -2.0 / (1.0 + std::exp(3.404)), 2e-7);
}

TEST(OpsNn, AttentionMatchesReference) {
  std::mt19937 rng(14);
  struct Case {
    int n_seq, seq_len, n_head, head_dim;
  };
  const Case cases[] = {{1, 1, 1, 8},    {2, 5, 2, 8},    {3, 17, 3, 16}, {1, 50, 4, 64},
                        {2, 257, 2, 40}, {1, 300, 1, 12}, {2, 33, 2, 3},  {1, 16, 2, 8},
                        {1, 64, 1, 16},  {1, 577, 2, 64}};  // no padding column; CLIP-L's 577
  for (int nth : {1, 3}) {
    cpu::ThreadPool pool(nth);
    for (const Case& c : cases) {
      const int64_t rows = static_cast<int64_t>(c.n_seq) * c.seq_len, E = int64_t{c.n_head} * c.head_dim;
      auto q = test::random_floats(rows * E, rng, 1.5f), k = test::random_floats(rows * E, rng, 1.5f),
           v = test::random_floats(rows * E, rng);
      std::vector<float> o(rows * E), orf(rows * E);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
      ops::attention(q.data(), k.data(), v.data(), c.n_seq, c.seq_len, c.n_head, c.head_dim, scale, o.data(), pool);
      ops::ref::attention(q.data(), k.data(), v.data(), c.n_seq, c.seq_len, c.n_head, c.head_dim, scale, orf.data());
      float vmax = 0.0f;
      for (float f : v) vmax = std::max(vmax, std::fabs(f));
      for (size_t i = 0; i < o.size(); ++i) {
        ASSERT_NEAR(o[i], orf[i], 2e-5 * vmax)
            << c.n_seq << "x" << c.seq_len << " h" << c.n_head << " d" << c.head_dim << " at " << i;
      }
    }
  }
}

TEST(OpsNn, AttentionIsBatchInvariant) {
  // A sequence's output is bit for bit the same alone, in a batch of sequences and with any
  // thread count.
  std::mt19937 rng(15);
  const int L = 45, H = 3, D = 24, E = H * D, n_seq = 3;
  auto q = test::random_floats(n_seq * L * E, rng), k = test::random_floats(n_seq * L * E, rng),
       v = test::random_floats(n_seq * L * E, rng);
  cpu::ThreadPool p1(1), p3(3);
  std::vector<float> all(q.size()), one(static_cast<size_t>(L) * E);
  ops::attention(q.data(), k.data(), v.data(), n_seq, L, H, D, 0.2f, all.data(), p3);
  for (int s = 0; s < n_seq; ++s) {
    const size_t off = static_cast<size_t>(s) * L * E;
    ops::attention(q.data() + off, k.data() + off, v.data() + off, 1, L, H, D, 0.2f, one.data(), p1);
    for (size_t i = 0; i < one.size(); ++i) ASSERT_EQ(one[i], all[off + i]) << s << " " << i;
  }
}

TEST(OpsNn, RowOpsAreBatchInvariant) {
  std::mt19937 rng(16);
  const int64_t n = 77, n_tok = 33;
  auto x = test::random_floats(n * n_tok, rng, 2.0f), w = test::random_floats(n, rng), b = test::random_floats(n, rng);
  cpu::ThreadPool p1(1), p3(3);
  std::vector<float> all(x.size()), one(n);
  ops::layer_norm(x.data(), w.data(), b.data(), n_tok, n, 1e-5f, all.data(), p3);
  auto g = x, qg = x;
  ops::gelu(g.data(), n_tok, n, p3);
  ops::quick_gelu(qg.data(), n_tok, n, p3);
  for (int64_t t = 0; t < n_tok; ++t) {
    ops::layer_norm(x.data() + t * n, w.data(), b.data(), 1, n, 1e-5f, one.data(), p1);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(one[i], all[t * n + i]);
    std::vector<float> r(x.begin() + t * n, x.begin() + (t + 1) * n), r2 = r;
    ops::gelu(r.data(), 1, n, p1);
    ops::quick_gelu(r2.data(), 1, n, p1);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(r[i], g[t * n + i]);
      ASSERT_EQ(r2[i], qg[t * n + i]);
    }
  }
}

TEST(OpsNn, BadArguments) {
  cpu::ThreadPool pool(1);
  std::vector<float> x(16);
  EXPECT_THROW(ops::attention(x.data(), x.data(), x.data(), 1, 2, 0, 8, 1.0f, x.data(), pool), InvalidArgument);
  EXPECT_THROW(ops::attention(nullptr, x.data(), x.data(), 1, 2, 1, 8, 1.0f, x.data(), pool), InvalidArgument);
  EXPECT_THROW(ops::layer_norm(nullptr, nullptr, nullptr, 2, 8, 1e-5f, x.data(), pool), InvalidArgument);
  EXPECT_THROW(ops::add_bias(x.data(), nullptr, 2, 8, pool), InvalidArgument);
}
