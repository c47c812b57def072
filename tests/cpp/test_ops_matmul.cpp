// Parity of the CPU matmul (SIMD tiles, threading, edges) with the scalar references.
//
// Tolerances (quantized weights multiply a 16-bit copy of x: Q16 blocks of 32, Q16K of 256):
//  * vs ref::matmul_quant (same activation quantization, exact integer block sums, f32
//    accumulation in another order): |diff| <= kQuantRel * sum_i |w_i x_i| + 1e-6. Both sides
//    round each block term and the running sum to f32 (2^-24 relative per operation, at most a
//    few hundred terms); measured max 1.1e-7 relative, so kQuantRel = 1e-6 leaves a margin ~9x.
//  * vs ref::matmul_f32 (dequantized weights, double accumulation, x unrounded):
//    |diff| <= 1e-4 * sum_i |w_i x_i| + 1e-6 (measured max 2.4e-5 relative), and also within the worst case of the
//    activation rounding, sum_b (sum_{i in b} |w_i|) * amax_b(x) / 65534 * 1.01, plus 1e-5 relative for f32. For float
//    weights only 1e-5 * sum_i |w_i x_i| + 1e-6 applies.
//  * the scalar fallback path (simd=false) must equal ref::matmul_quant bit for bit.
#include <gtest/gtest.h>

#include <akvq/error.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/qgemm.h"
#include "ops/matmul_detail.h"
#include "ops/ops.h"
#include "ops/ref.h"
#include "test_ops_util.h"

using namespace akvq;

namespace {

constexpr double kQuantRel = 1e-6;  // fast path vs same-quantization reference
constexpr double kF32Rel = 1e-4;    // quantized weights vs pure f32 reference (16-bit activations)

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0,
                           DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K};

int act_block(DType t) {
  switch (ops::ref::act_kind(t)) {
    case ops::ref::ActKind::Q16: return 32;
    case ops::ref::ActKind::Q16K: return 256;
    default: return 0;
  }
}

// Inner sizes per type: several block counts, including odd ones for the float types.
std::vector<int64_t> inner_sizes(DType t) {
  const int64_t b = dtype_info(t).block;
  if (b == 1) return {1, 7, 37, 64, 200};
  if (b == 32) return {32, 96, 576};
  return {256, 768};
}

void check_matmul(DType t, int64_t n_in, int64_t n_out, int64_t n_tok, cpu::ThreadPool& pool,
                  const ops::detail::MatmulOptions& opt, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto raw = test::random_weights(t, n_out, n_in, rng);
  const TensorView w = test::view(t, raw, n_in, n_out);
  const auto x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
  std::vector<float> y(n_tok * n_out, NAN), yq(n_tok * n_out), yf(n_tok * n_out);
  ops::detail::matmul(w, x.data(), n_tok, y.data(), pool, opt);
  ops::ref::matmul_quant(w, x.data(), n_tok, yq.data());
  ops::ref::matmul_f32(w, x.data(), n_tok, yf.data());
  const auto wd = test::dequant_all(w);
  const int ab = act_block(t);
  for (int64_t tk = 0; tk < n_tok; ++tk) {
    for (int64_t r = 0; r < n_out; ++r) {
      const size_t i = tk * n_out + r;
      const float* wr = wd.data() + r * n_in;
      const float* xr = x.data() + tk * n_in;
      const double absdot = test::abs_dot(wr, xr, n_in);
      const double f32_tol = 1e-5 * absdot + 1e-6;
      SCOPED_TRACE(::testing::Message() << dtype_info(t).name << " n_in=" << n_in << " n_out=" << n_out
                                        << " n_tok=" << n_tok << " tile=" << opt.tile_r << "x" << opt.tile_t
                                        << " simd=" << opt.simd << " t=" << tk << " r=" << r);
      if (opt.simd) {
        ASSERT_NEAR(y[i], yq[i], kQuantRel * absdot + 1e-6);
      } else {
        ASSERT_EQ(y[i], yq[i]);
      }
      if (ab) {
        ASSERT_NEAR(y[i], yf[i], kF32Rel * absdot + 1e-6);
        ASSERT_NEAR(y[i], yf[i], f32_tol + test::act_quant_bound(wr, xr, n_in, ab));
      } else {
        ASSERT_NEAR(y[i], yf[i], f32_tol);
      }
    }
  }
}

}  // namespace

TEST(OpsMatmul, EveryTypeAndShapeMatchesReferences) {
  cpu::ThreadPool pool(3);
  uint32_t seed = 1;
  for (DType t : kAllTypes) {
    for (int64_t n_in : inner_sizes(t)) {
      for (int64_t n_out : {1, 5, 37}) {
        for (int64_t n_tok = 1; n_tok <= 9; ++n_tok) {
          check_matmul(t, n_in, n_out, n_tok, pool, {}, seed++);
        }
      }
    }
  }
}

TEST(OpsMatmul, ScalarFallbackEqualsReferenceExactly) {
  cpu::ThreadPool pool(2);
  ops::detail::MatmulOptions opt;
  opt.simd = false;
  uint32_t seed = 100;
  for (DType t : kAllTypes) {
    for (int64_t n_tok : {1, 2, 5}) check_matmul(t, inner_sizes(t).back(), 13, n_tok, pool, opt, seed++);
  }
}

TEST(OpsMatmul, EveryTileShapeAndChunking) {
  cpu::ThreadPool pool(2);
  uint32_t seed = 200;
  for (DType t : kAllTypes) {
    const cpu::TileKernels* k = cpu::simd_kernels(t);
    if (!k) GTEST_SKIP() << "no SIMD kernels in this build";
    for (int R = 1; R <= cpu::kMaxTileR; ++R) {
      for (int T = 1; T <= cpu::kMaxTileT; ++T) {
        bool ok = true;
        for (int r = 1; r <= R; ++r)
          for (int tt = 1; tt <= T; ++tt) ok = ok && k->fn[r - 1][tt - 1];
        if (!ok) continue;
        ops::detail::MatmulOptions opt;
        opt.tile_r = R;
        opt.tile_t = T;
        opt.chunk_rows = 3;  // rounded up to a multiple of R: exercises partial tiles at chunk ends
        check_matmul(t, inner_sizes(t)[1], 11, 7, pool, opt, seed++);
      }
    }
  }
}

TEST(OpsMatmul, LongTokenRunsSpanSeveralTokenBlocks) {
  cpu::ThreadPool pool(2);
  check_matmul(DType::Q4_1, 576, 19, 150, pool, {}, 300);
  check_matmul(DType::Q6_K, 256, 9, 70, pool, {}, 301);
  check_matmul(DType::F16, 40, 9, 131, pool, {}, 302);
}

TEST(OpsMatmul, RejectsBadShapes) {
  cpu::ThreadPool pool(1);
  std::mt19937 rng(5);
  const auto raw = test::random_weights(DType::Q4_0, 2, 64, rng);
  TensorView w = test::view(DType::Q4_0, raw, 64, 2);
  w.ne[0] = 48;  // not a multiple of 32
  std::vector<float> x(64), y(2);
  EXPECT_THROW(ops::matmul(w, x.data(), 1, y.data(), pool), InvalidArgument);
  w.ne[0] = 64;
  w.type = static_cast<DType>(7);
  EXPECT_THROW(ops::matmul(w, x.data(), 1, y.data(), pool), InvalidArgument);
}

TEST(OpsMatmul, ActivationQuantizationMatchesReferenceBitForBit) {
  std::mt19937 rng(9);
  for (int64_t n : {256, 768, 1536}) {
    auto x = test::random_floats(static_cast<size_t>(n), rng, 3.0f);
    x[5] = 0.0f;
    for (int i = 64; i < 96; ++i) x[i] = 0.0f;       // an all-zero block: d = 0, q = 0, s = 0
    for (int i = 224; i < 256; ++i) x[i] *= 1e-33f;  // below kActTiny: stored as zeros
    for (int i = 96; i < 128; ++i) x[i] *= 1e-25f;   // tiny but kept
    std::vector<uint8_t> a(ops::act_q16_row_bytes(n)), b(a.size());
    cpu::quantize_row_q16(x.data(), a.data(), n);
    ops::ref::quantize_row_q16(x.data(), b.data(), n);
    ASSERT_EQ(a, b);
    const int16_t* q = ops::act_q16_qs(a.data());
    const float* d = ops::act_q16_d(a.data(), n);
    const float* s = ops::act_q16_s(a.data(), n);
    EXPECT_EQ(d[2], 0.0f);
    EXPECT_EQ(s[2], 0.0f);
    EXPECT_EQ(q[70], 0);
    EXPECT_EQ(d[7], 0.0f);
    EXPECT_GT(d[3], 0.0f);
    for (int64_t blk = 0; blk < n / 32; ++blk) {  // |x - q d| <= d/2 (+ a few ulp), extremes hit 32767
      int amaxq = 0, sum = 0;
      for (int j = 0; j < 32; ++j) {
        const int64_t i = blk * 32 + j;
        EXPECT_LE(std::fabs(x[i] - q[i] * d[blk]), d[blk] > 0 ? d[blk] * 0.5005f : ops::kActTiny) << i;
        amaxq = std::max(amaxq, std::abs(static_cast<int>(q[i])));
        sum += q[i];
      }
      if (d[blk] > 0) {
        EXPECT_EQ(amaxq, 32767) << blk;
      }
      EXPECT_EQ(s[blk], d[blk] * static_cast<float>(sum));
    }
    test::expect_q16k_matches_reference(x.data(), n);
  }
}

TEST(OpsMatmul, ExtremeActivationsDoNotOverflow) {
  // Weights at their largest integer magnitude against x = +-amax everywhere (every q = +-32767):
  // the int32 block / super-block sums are at their bound and must still match the references.
  cpu::ThreadPool pool(2);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t n_in = 512, n_out = 4;
    std::mt19937 rng(77);
    auto raw = test::random_weights(t, n_out, n_in, rng);
    const DTypeInfo& info = dtype_info(t);
    for (size_t off = 0; off < raw.size(); off += info.block_bytes) {
      uint8_t* b = raw.data() + off;
      switch (t) {
        case DType::Q4_0:
        case DType::Q4_1: std::memset(b + (t == DType::Q4_0 ? 2 : 4), 0xff, 16); break;  // q = 15
        case DType::Q8_0: std::memset(b + 2, 0x80, 32); break;                           // q = -128
        case DType::Q4_K: std::memset(b + 4, 0xff, 140); break;                          // q = 15, sc = mn = 63
        case DType::Q6_K:
          std::memset(b, 0, 192);          // q = 0 -> q - 32 = -32
          std::memset(b + 192, 0x80, 16);  // scales -128
          break;
        default: break;
      }
    }
    const TensorView w = test::view(t, raw, n_in, n_out);
    for (float sign : {1.0f, -1.0f}) {
      const int64_t n_tok = 5;
      std::vector<float> x(n_tok * n_in, sign * 3.0f), y(n_tok * n_out), yq(n_tok * n_out), yf(n_tok * n_out);
      ops::matmul(w, x.data(), n_tok, y.data(), pool);
      ops::ref::matmul_quant(w, x.data(), n_tok, yq.data());
      ops::ref::matmul_f32(w, x.data(), n_tok, yf.data());
      const auto wd = test::dequant_all(w);
      for (int64_t i = 0; i < n_tok * n_out; ++i) {
        const double absdot = test::abs_dot(wd.data() + (i % n_out) * n_in, x.data(), n_in);
        ASSERT_NEAR(y[i], yq[i], kQuantRel * absdot + 1e-6) << dtype_info(t).name << " " << i;
        ASSERT_NEAR(y[i], yf[i], kF32Rel * absdot + 1e-6) << dtype_info(t).name << " " << i;
      }
    }
  }
}

TEST(OpsGetRows, DequantizesRowsAndRejectsBadIds) {
  std::mt19937 rng(11);
  const auto raw = test::random_weights(DType::Q8_0, 10, 64, rng);
  const TensorView w = test::view(DType::Q8_0, raw, 64, 10);
  const int32_t ids[3] = {9, 0, 9};
  std::vector<float> out(3 * 64), ref(64);
  ops::get_rows(w, ids, 3, out.data());
  for (int i = 0; i < 3; ++i) {
    ops::ref::dequantize_row(DType::Q8_0, w.row(ids[i]), ref.data(), 64);
    for (int j = 0; j < 64; ++j) ASSERT_EQ(out[i * 64 + j], ref[j]);
  }
  const int32_t bad[2] = {3, 10};
  EXPECT_THROW(ops::get_rows(w, bad, 2, out.data()), InvalidArgument);
  const int32_t neg[1] = {-1};
  EXPECT_THROW(ops::get_rows(w, neg, 1, out.data()), InvalidArgument);
}
