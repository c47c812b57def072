// Float-weight matmul (F32, F16, BF16 x f32 activations) on each compiled SIMD ISA: parity with the
// scalar references for every tile shape and odd inner sizes (AVX-512: masked tail of n_in % 16;
// AVX2: scalar tail of n_in % 8), and batch invariance: a (row, token) result is bit-identical
// whatever tile, chunk or batch computes it.
//
// Tolerances as test_ops_matmul.cpp: vs ref::matmul_f32 (double accumulation) 1e-5 * sum|w x| +
// 1e-6; vs ref::matmul_quant (f32 accumulation, another order) 1e-6 * sum|w x| + 1e-6.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/qgemm.h"
#include "ops/matmul_detail.h"
#include "ops/ops.h"
#include "ops/pack.h"
#include "ops/ref.h"
#include "test_ops_util.h"

using namespace akvq;

namespace {

const DType kFloatTypes[] = {DType::F32, DType::F16, DType::BF16};

// Caps the ISA for the lifetime of the object; restores "no cap" after.
struct IsaCap {
  explicit IsaCap(cpu::Isa cap) { cpu::set_isa_cap(cap); }
  ~IsaCap() { cpu::set_isa_cap(cpu::Isa::Avx512); }
};

class GemmFloat : public ::testing::TestWithParam<cpu::Isa> {
 protected:
  void SetUp() override {
    cap_ = std::make_unique<IsaCap>(GetParam());
    if (cpu::active_isa() != GetParam()) {
      GTEST_SKIP() << "this CPU/build runs " << cpu::isa_name(cpu::active_isa()) << ", not "
                   << cpu::isa_name(GetParam()) << " (needs the CPU features and the compiled kernels)";
    }
  }
  std::unique_ptr<IsaCap> cap_;
};

// y = x . W^T with `opt`, checked against both references.
void check(DType t, int64_t n_in, int64_t n_out, int64_t n_tok, cpu::ThreadPool& pool,
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
  for (int64_t tk = 0; tk < n_tok; ++tk) {
    for (int64_t r = 0; r < n_out; ++r) {
      const size_t i = tk * n_out + r;
      const double absdot = test::abs_dot(wd.data() + r * n_in, x.data() + tk * n_in, n_in);
      SCOPED_TRACE(::testing::Message() << dtype_info(t).name << " n_in=" << n_in << " n_out=" << n_out
                                        << " n_tok=" << n_tok << " tile=" << opt.tile_r << "x" << opt.tile_t
                                        << " t=" << tk << " r=" << r);
      ASSERT_NEAR(y[i], yq[i], 1e-6 * absdot + 1e-6);
      ASSERT_NEAR(y[i], yf[i], 1e-5 * absdot + 1e-6);
    }
  }
}

// Every tile R x T the kernel set provides (all smaller ones must exist too).
std::vector<std::pair<int, int>> tiles_of(const cpu::TileKernels* k) {
  std::vector<std::pair<int, int>> out;
  for (int R = 1; R <= cpu::kMaxTileR; ++R) {
    for (int T = 1; T <= cpu::kMaxTileT; ++T) {
      if (k->fn[R - 1][T - 1]) out.emplace_back(R, T);
    }
  }
  return out;
}

// y [n_tok, rows of w] computed with R x T tiles and row chunks of `chunk` (0: the default).
std::vector<float> run_tiled(const TensorView& w, const float* x, int64_t n_tok, int R, int T, int chunk,
                             cpu::ThreadPool& pool) {
  ops::detail::MatmulOptions opt;
  opt.tile_r = R;
  opt.tile_t = T;
  opt.chunk_rows = chunk;
  std::vector<float> y(n_tok * w.rows(), NAN);
  ops::detail::matmul(w, x, n_tok, y.data(), pool, opt);
  return y;
}

}  // namespace

TEST_P(GemmFloat, KernelSetFollowsTheIsa) {
  for (DType t : kFloatTypes) {
    const cpu::TileKernels* k = cpu::simd_kernels(t);
    ASSERT_NE(k, nullptr) << dtype_info(t).name;
    EXPECT_EQ(k->act, cpu::ActFormat::Native);
    if (GetParam() == cpu::Isa::Avx512) {  // a different table from the AVX2 one
      const IsaCap avx2(cpu::Isa::Avx2);
      EXPECT_NE(cpu::simd_kernels(t), k) << dtype_info(t).name;
    }
  }
}

TEST_P(GemmFloat, EveryTileShapeAndOddInnerSizesMatchReferences) {
  cpu::ThreadPool pool(2);
  uint32_t seed = 1;
  for (DType t : kFloatTypes) {
    const cpu::TileKernels* k = cpu::simd_kernels(t);
    ASSERT_NE(k, nullptr);
    const auto tiles = tiles_of(k);
    ASSERT_FALSE(tiles.empty());
    for (const auto& [R, T] : tiles) {
      for (int64_t n_in : {1, 7, 15, 16, 17, 31, 37, 64, 200, 1029}) {
        ops::detail::MatmulOptions opt;
        opt.tile_r = R;
        opt.tile_t = T;
        opt.chunk_rows = 3;  // rounded up to a multiple of R: partial tiles at chunk ends
        check(t, n_in, 11, 7, pool, opt, seed++);
      }
    }
    for (int64_t n_tok : {1, 2, 5, 70}) check(t, 333, 19, n_tok, pool, {}, seed++);  // default tiles
  }
}

// One token alone (decode, R x 1 tiles) gives the bits it gets inside any prefill tiling.
TEST_P(GemmFloat, ResultDoesNotDependOnTileChunkOrBatch) {
  cpu::ThreadPool pool(3);
  const int64_t n_in = 1000 + 13, n_out = 23, n_tok = 11;
  uint32_t seed = 500;
  for (DType t : kFloatTypes) {
    std::mt19937 rng(seed++);
    const auto raw = test::random_weights(t, n_out, n_in, rng);
    const TensorView w = test::view(t, raw, n_in, n_out);
    const auto x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
    std::vector<float> alone(n_tok * n_out);
    for (int64_t tk = 0; tk < n_tok; ++tk) {
      ops::matmul(w, x.data() + tk * n_in, 1, alone.data() + tk * n_out, pool);
    }
    for (const auto& [R, T] : tiles_of(cpu::simd_kernels(t))) {
      for (int chunk : {0, 1, 5}) {
        const std::vector<float> y = run_tiled(w, x.data(), n_tok, R, T, chunk, pool);
        for (size_t i = 0; i < y.size(); ++i) {
          ASSERT_EQ(std::memcmp(&y[i], &alone[i], sizeof(float)), 0)
              << dtype_info(t).name << " tile " << R << "x" << T << " chunk " << chunk << " token " << i / n_out
              << " row " << i % n_out << ": " << y[i] << " vs " << alone[i];
        }
      }
    }
  }
}

// The P16 panel layout (cpu/qgemm.h) is chosen only for batch-only weights whose row count is a
// multiple of 16, where panel tiles exist (AVX2, AVX-512); the packed bytes are the file's rows
// transposed by panel, and the file view is left as it was.
TEST_P(GemmFloat, PanelLayoutOnlyForBatchOnlyWeights) {
  std::mt19937 rng(77);
  for (DType t : kFloatTypes) {
    EXPECT_EQ(cpu::preferred_packing(t, 32, true), cpu::kPackP16) << dtype_info(t).name;
    EXPECT_EQ(cpu::preferred_packing(t, 32, false), cpu::kPackNone) << dtype_info(t).name;
    EXPECT_EQ(cpu::preferred_packing(t, 40, true), cpu::kPackNone) << dtype_info(t).name;
    const int64_t n_in = 5, n_out = 32;
    const auto raw = test::random_weights(t, n_out, n_in, rng);
    const auto copy = raw;
    TensorView w = test::view(t, raw, n_in, n_out);
    ops::PackedWeights store;
    ASSERT_TRUE(store.pack(w, true));
    EXPECT_EQ(0, std::memcmp(raw.data(), copy.data(), raw.size())) << "the file bytes must not change";
    EXPECT_EQ(w.packing, cpu::kPackP16);
    EXPECT_EQ(store.bytes(), raw.size());
    const size_t es = t == DType::F32 ? 4 : 2;
    const auto* packed = static_cast<const uint8_t*>(w.packed);
    for (int64_t row = 0; row < n_out; ++row) {
      for (int64_t i = 0; i < n_in; ++i) {
        const size_t at = static_cast<size_t>((row / 16) * 16 * n_in + 16 * i + row % 16) * es;
        ASSERT_EQ(0, std::memcmp(packed + at, raw.data() + (row * n_in + i) * es, es))
            << dtype_info(t).name << " row " << row << " index " << i;
      }
    }
  }
  const IsaCap scalar(cpu::Isa::Scalar);  // no panel tiles: the file layout stays
  EXPECT_EQ(cpu::preferred_packing(DType::F16, 32, true), cpu::kPackNone);
}

// Panel tiles: every tile shape and chunking gives the bits of the 1 x 1 tile (one FMA chain per
// (row, token) in inner order), within the tolerances of the references; the AVX2 and AVX-512
// tiles give the same bits.
TEST_P(GemmFloat, PanelTilesMatchReferencesAndEachOther) {
  cpu::ThreadPool pool(3);
  std::mt19937 rng(91);
  for (DType t : kFloatTypes) {
    for (int64_t n_in : {1, 7, 16, 37, 1029}) {
      const int64_t n_out = 48, n_tok = 29;
      const auto raw = test::random_weights(t, n_out, n_in, rng);
      TensorView w = test::view(t, raw, n_in, n_out);
      const TensorView plain = w;
      ops::PackedWeights store;
      ASSERT_TRUE(store.pack(w, true));
      const auto x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
      std::vector<float> yf(n_tok * n_out);
      ops::ref::matmul_f32(plain, x.data(), n_tok, yf.data());
      const std::vector<float> one = run_tiled(w, x.data(), n_tok, 1, 1, 0, pool);
      const auto wd = test::dequant_all(plain);
      for (int64_t tk = 0; tk < n_tok; ++tk) {
        for (int64_t r = 0; r < n_out; ++r) {
          const double absdot = test::abs_dot(wd.data() + r * n_in, x.data() + tk * n_in, n_in);
          ASSERT_NEAR(one[tk * n_out + r], yf[tk * n_out + r], 1e-5 * absdot + 1e-6)
              << dtype_info(t).name << " n_in=" << n_in << " t=" << tk << " r=" << r;
        }
      }
      if (GetParam() == cpu::Isa::Avx512) {  // the same chains with 8-lane vectors
        const IsaCap avx2(cpu::Isa::Avx2);
        const std::vector<float> y2 = run_tiled(w, x.data(), n_tok, 1, 1, 0, pool);
        ASSERT_EQ(0, std::memcmp(y2.data(), one.data(), y2.size() * sizeof(float)))
            << dtype_info(t).name << " n_in=" << n_in << ": AVX2 and AVX-512 panel tiles differ";
      }
      const cpu::TileKernels* k = cpu::simd_kernels_packed(t, cpu::kPackP16);
      ASSERT_NE(k, nullptr);
      EXPECT_EQ(k->row_unit, 16);
      for (const auto& [R, T] : tiles_of(k)) {
        for (int chunk : {0, 16, 40}) {
          const std::vector<float> y = run_tiled(w, x.data(), n_tok, R, T, chunk, pool);
          ASSERT_EQ(0, std::memcmp(y.data(), one.data(), y.size() * sizeof(float)))
              << dtype_info(t).name << " n_in=" << n_in << " tile " << R << "x" << T << " chunk " << chunk;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, GemmFloat, ::testing::Values(cpu::Isa::Avx2, cpu::Isa::Avx512),
                         [](const ::testing::TestParamInfo<cpu::Isa>& p) {
                           return std::string(cpu::isa_name(p.param));
                         });
