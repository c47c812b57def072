// Parity of the element-wise ops (SIMD) with the scalar references, odd sizes included.
// Tolerances (relative to the magnitude of the result unless stated):
//  * rms_norm: 1e-5 — f32 8-lane sum of squares vs double (error ~n*2^-24 relative, n <= 1000).
//  * rope: 1e-6 absolute for |x| ~ 1 — same cos/sin table (double), only the f32 fma differs.
//  * swiglu / softmax: 2e-6 relative — our vector exp has < 2e-7 relative error, plus one
//    division / normalisation rounding; softmax also 2^-24*|x - max| relative, because the
//    reference forms x - max in double and we in f32.
//  * dot_f16: 1e-5 * sum |x_i y_i| (f32 accumulation vs double); axpy_f16: fma vs mul+add, 1 ulp.
//  * f32_to_f16_row: bit-exact (F16C rounds to nearest even like the scalar conversion).
#include <gtest/gtest.h>

#include <akvq/error.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "ops/ops.h"
#include "ops/ref.h"
#include "test_ops_util.h"

using namespace akvq;

namespace {
const int64_t kSizes[] = {1, 3, 8, 15, 16, 17, 64, 100, 576, 1001};
}

TEST(OpsElementwise, RmsNorm) {
  std::mt19937 rng(1);
  for (int64_t n : kSizes) {
    for (bool weighted : {false, true}) {
      const int64_t n_tok = 3;
      auto x = test::random_floats(n * n_tok, rng, 2.0f);
      auto w = test::random_floats(n, rng);
      std::vector<float> y(x.size()), yr(x.size());
      ops::rms_norm(x.data(), weighted ? w.data() : nullptr, n_tok, n, 1e-5f, y.data());
      ops::ref::rms_norm(x.data(), weighted ? w.data() : nullptr, n_tok, n, 1e-5f, yr.data());
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], yr[i], 1e-5 * std::fabs(yr[i]) + 1e-7) << n << " " << i;
      ops::rms_norm(x.data(), weighted ? w.data() : nullptr, n_tok, n, 1e-5f, x.data());  // in place
      for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(x[i], y[i]);
    }
  }
}

// rope keeps the cos/sin tables of its last call's positions: a run of calls whose position lists
// repeat, change in one entry, hold equal neighbours (the sequences of a batched step) or change
// length, and a change of theta or of the scaling (factor, per-pair divisors: another model's, or
// the same array with other values) must each give the reference's rotation, bit-exact tables or not.
TEST(OpsElementwise, RopeTablesFollowEachCallsPositions) {
  std::mt19937 rng(3);
  const int head_dim = 64, n_head = 2, n_rot = 64;
  std::vector<float> div_a(n_rot / 2), div_b(n_rot / 2);
  for (int i = 0; i < n_rot / 2; ++i) div_a[i] = 1.0f + 0.25f * i, div_b[i] = 8.0f / (1.0f + i);
  struct Call {
    std::vector<int32_t> pos;
    float theta;
    ops::RopeScaling scaling;
  };
  const std::vector<Call> calls = {
      {{7, 8, 9}, 1e4f, {}},    {{7, 8, 9}, 1e4f, {}},      {{7, 8, 10}, 1e4f, {}},       {{5, 5, 5, 5}, 1e4f, {}},
      {{5, 6}, 1e4f, {}},       {{5, 6}, 5e5f, {}},         {{5, 6}, 1e4f, {}},           {{100, 5, 5}, 1e4f, {}},
      {{0}, 1e4f, {}},          {{5, 6}, 1e4f, {0.25f}},    {{5, 6}, 1e4f, {0.5f}},       {{5, 6}, 1e4f, {1.0f, div_a.data()}},
      {{5, 6}, 1e4f, {1.0f, div_b.data()}}, {{5, 6}, 1e4f, {0.25f, div_b.data()}}, {{5, 6}, 1e4f, {}}};
  for (size_t ci = 0; ci < calls.size(); ++ci) {
    const Call& c = calls[ci];
    if (ci == 12) div_b[3] = 0.5f;  // the same array, another value: call 13 must see it
    const int n_tok = static_cast<int>(c.pos.size());
    auto x = test::random_floats(static_cast<size_t>(n_tok * n_head * head_dim), rng);
    auto xr = x;
    ops::rope(x.data(), n_tok, n_head, head_dim, n_rot, c.pos.data(), c.theta, ops::RopeMode::HalfSplit, c.scaling);
    ops::ref::rope(xr.data(), n_tok, n_head, head_dim, n_rot, c.pos.data(), c.theta, ops::RopeMode::HalfSplit,
                   c.scaling);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(x[i], xr[i], 1e-6 * (1 + std::fabs(xr[i]))) << "call with " << n_tok << " positions, value " << i;
    }
  }
}

TEST(OpsElementwise, RopeBothModesLongPositions) {
  std::mt19937 rng(2);
  for (auto mode : {ops::RopeMode::AdjacentPairs, ops::RopeMode::HalfSplit}) {
    for (int n_rot : {2, 6, 32, 64}) {
      const int head_dim = 64, n_head = 3, n_tok = 4;
      auto x = test::random_floats(static_cast<size_t>(n_tok * n_head * head_dim), rng);
      auto xr = x;
      const int32_t pos[n_tok] = {0, 1, 4097, 1000000};
      ops::rope(x.data(), n_tok, n_head, head_dim, n_rot, pos, 10000.0f, mode);
      ops::ref::rope(xr.data(), n_tok, n_head, head_dim, n_rot, pos, 10000.0f, mode);
      for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], xr[i], 1e-6 * (1 + std::fabs(xr[i]))) << i;
    }
  }
  std::vector<float> x(64);
  const int32_t p = 0;
  EXPECT_THROW(ops::rope(x.data(), 1, 1, 64, 65, &p, 1e4f, ops::RopeMode::HalfSplit), InvalidArgument);
  EXPECT_THROW(ops::rope(x.data(), 1, 1, 64, 7, &p, 1e4f, ops::RopeMode::HalfSplit), InvalidArgument);
}

TEST(OpsElementwise, RopeKnownValues) {
  // Independent of the references: position 1, n_rot 4, theta 100 -> freqs 1 and 0.1.
  float adj[4] = {1, 0, 1, 0};
  const int32_t pos = 1;
  ops::rope(adj, 1, 1, 4, 4, &pos, 100.0f, ops::RopeMode::AdjacentPairs);
  EXPECT_NEAR(adj[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(adj[1], std::sin(1.0), 1e-7);
  EXPECT_NEAR(adj[2], std::cos(0.1), 1e-7);
  EXPECT_NEAR(adj[3], std::sin(0.1), 1e-7);
  float half[4] = {1, 1, 0, 0};  // pairs (x0, x2) and (x1, x3)
  ops::rope(half, 1, 1, 4, 4, &pos, 100.0f, ops::RopeMode::HalfSplit);
  EXPECT_NEAR(half[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(half[2], std::sin(1.0), 1e-7);
  EXPECT_NEAR(half[1], std::cos(0.1), 1e-7);
  EXPECT_NEAR(half[3], std::sin(0.1), 1e-7);
  // llama.cpp's scaling: angle = pos * freq_scale * freq / divisor; position 4, scale 1/4,
  // divisors 2 and 0.5 -> angles 4 * 0.25 * 1 / 2 = 0.5 and 4 * 0.25 * 0.1 / 0.5 = 0.2.
  const float div[2] = {2.0f, 0.5f};
  const int32_t pos4 = 4;
  float sc[4] = {1, 0, 1, 0};
  ops::rope(sc, 1, 1, 4, 4, &pos4, 100.0f, ops::RopeMode::AdjacentPairs, {0.25f, div});
  EXPECT_NEAR(sc[0], std::cos(0.5), 1e-7);
  EXPECT_NEAR(sc[1], std::sin(0.5), 1e-7);
  EXPECT_NEAR(sc[2], std::cos(0.2), 1e-7);
  EXPECT_NEAR(sc[3], std::sin(0.2), 1e-7);
}

TEST(OpsElementwise, SwigluAddSoftmax) {
  std::mt19937 rng(3);
  for (int64_t n : kSizes) {
    auto g = test::random_floats(n, rng, 4.0f), u = test::random_floats(n, rng);
    g[0] = -100.0f;  // far tail of silu
    std::vector<float> y(n), yr(n);
    ops::swiglu(g.data(), u.data(), y.data(), n);
    ops::ref::swiglu(g.data(), u.data(), yr.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], yr[i], 2e-6 * std::fabs(yr[i]) + 1e-30) << n << " " << i;

    auto a = test::random_floats(n, rng), ar = a;
    ops::add_inplace(a.data(), u.data(), n);
    ops::ref::add_inplace(ar.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(a[i], ar[i]);

    auto s = test::random_floats(n, rng, 10.0f), sr = s;
    float mx = s[0];
    for (float v : s) mx = std::fmax(mx, v);
    const auto s_in = s;
    ops::softmax(s.data(), n);
    ops::ref::softmax(sr.data(), n);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      // + the f32 rounding of x - max (the reference subtracts in double): 2^-24 * |x - max|
      const double rel = 2e-6 + 6e-8 * std::fabs(s_in[i] - mx);
      ASSERT_NEAR(s[i], sr[i], rel * sr[i] + 1e-37) << n << " " << i;
      sum += s[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

TEST(OpsElementwise, Fp16Helpers) {
  std::mt19937 rng(4);
  for (int64_t n : kSizes) {
    auto x = test::random_floats(n, rng, 3.0f), f = test::random_floats(n, rng, 3.0f);
    std::vector<uint16_t> h(n), hr(n);
    ops::f32_to_f16_row(f.data(), h.data(), n);
    ops::ref::f32_to_f16_row(f.data(), hr.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(h[i], hr[i]);

    double scale = 0;
    for (int64_t i = 0; i < n; ++i) scale += std::fabs(x[i] * fp16_to_f32(h[i]));
    EXPECT_NEAR(ops::dot_f16(x.data(), h.data(), n), ops::ref::dot_f16(x.data(), h.data(), n), 1e-5 * scale);

    auto y = test::random_floats(n, rng), yr = y;
    ops::axpy_f16(0.7f, h.data(), y.data(), n);
    ops::ref::axpy_f16(0.7f, h.data(), yr.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], yr[i], 2e-7 * (std::fabs(yr[i]) + std::fabs(0.7f * fp16_to_f32(h[i]))));
  }
}
