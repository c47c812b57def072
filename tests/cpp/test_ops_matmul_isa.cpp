// The matmul on every ISA the CPU offers (cpu/isa.h): AVX2 and, where the CPU has it, AVX-512
// (skipped with a reason elsewhere). Per ISA: parity with the same-quantization scalar reference
// (tolerance of test_ops_matmul.cpp: 1e-6 * sum|w x| + 1e-6), batch invariance (a token's row is
// bit-identical whatever tile, chunk or batch computes it), and the weights packed at load
// (ops/pack.h) giving bit-identical results to the file layout; all of it for 16-bit and 8-bit
// activation levels (TensorView::act_bits), and the 8-bit levels within their rounding bound.
#include <gtest/gtest.h>

#include <akvq/error.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "ops/matmul_detail.h"
#include "ops/pack.h"
#include "ops/ref.h"
#include "test_ops_util.h"

using namespace akvq;

namespace {

const DType kTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F16, DType::F32};

// Sets the ISA cap for one test and restores "no cap" after it.
struct IsaScope {
  explicit IsaScope(cpu::Isa isa) { cpu::set_isa_cap(isa); }
  ~IsaScope() { cpu::set_isa_cap(cpu::Isa::Avx512); }
};

bool cpu_has(cpu::Isa isa) {
  if (isa == cpu::Isa::Avx512) {
    const cpu::CpuFeatures& f = cpu::cpu_features();
    return cpu::avx512_compiled() && f.avx512 && f.avx512_vnni && f.avx512_bf16;
  }
#if defined(AKVQ_AVX2)
  return isa == cpu::Isa::Avx2;
#else
  return false;
#endif
}

std::vector<int64_t> inner_sizes(DType t) {
  const int64_t b = dtype_info(t).block;
  if (b == 1) return {37, 200};
  if (b == 32) return {32, 96, 160, 576};  // 1, 3, 5 and 18 blocks: full groups of 4 and tails
  return {256, 768};
}

class MatmulIsa : public ::testing::TestWithParam<cpu::Isa> {
 protected:
  void SetUp() override {
    if (!cpu_has(GetParam())) GTEST_SKIP() << "this CPU/build has no " << cpu::isa_name(GetParam()) << " kernels";
    scope_ = std::make_unique<IsaScope>(GetParam());
    ASSERT_EQ(cpu::active_isa(), GetParam());
  }
  std::unique_ptr<IsaScope> scope_;
};

TEST_P(MatmulIsa, MatchesSameQuantizationReference) {
  cpu::ThreadPool pool(2);
  std::mt19937 rng(11);
  for (int bits : {16, 8}) {
    for (DType t : kTypes) {
      for (int64_t n_in : inner_sizes(t)) {
        for (int64_t n_tok : {1, 3, 8}) {
          const int64_t n_out = 13;
          const auto raw = test::random_weights(t, n_out, n_in, rng);
          TensorView w = test::view(t, raw, n_in, n_out);
          w.act_bits = static_cast<uint8_t>(bits);
          const auto x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
          std::vector<float> y(n_tok * n_out), yq(n_tok * n_out);
          ops::detail::matmul(w, x.data(), n_tok, y.data(), pool, {});
          ops::ref::matmul_quant(w, x.data(), n_tok, yq.data());
          const auto wd = test::dequant_all(w);
          for (int64_t tk = 0; tk < n_tok; ++tk) {
            for (int64_t r = 0; r < n_out; ++r) {
              const double absdot = test::abs_dot(wd.data() + r * n_in, x.data() + tk * n_in, n_in);
              ASSERT_NEAR(y[tk * n_out + r], yq[tk * n_out + r], 1e-6 * absdot + 1e-6)
                  << dtype_info(t).name << " bits=" << bits << " n_in=" << n_in << " n_tok=" << n_tok << " t=" << tk
                  << " r=" << r;
            }
          }
        }
      }
    }
  }
}

// One token alone (decode) == the same token inside any batch, tile shape and chunking.
TEST_P(MatmulIsa, EveryTokenIsBitIdenticalWhateverTheBatch) {
  cpu::ThreadPool pool(3);
  std::mt19937 rng(12);
  for (int bits : {16, 8}) {
    for (DType t : kTypes) {
      const cpu::TileKernels* k = cpu::simd_kernels(t, bits);
      if (!k) continue;
      const int64_t n_in = inner_sizes(t).back(), n_out = 11, n_tok = 9;
      const auto raw = test::random_weights(t, n_out, n_in, rng);
      TensorView w = test::view(t, raw, n_in, n_out);
      w.act_bits = static_cast<uint8_t>(bits);
      const auto x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
      std::vector<float> single(n_tok * n_out);
      for (int64_t tk = 0; tk < n_tok; ++tk) {
        ops::detail::matmul(w, x.data() + tk * n_in, 1, single.data() + tk * n_out, pool, {});
      }
      for (int R = 1; R <= cpu::kMaxTileR; ++R) {
        for (int T = 1; T <= cpu::kMaxTileT; ++T) {
          if (!k->fn[R - 1][T - 1]) continue;
          ops::detail::MatmulOptions opt;
          opt.tile_r = R;
          opt.tile_t = T;
          opt.chunk_rows = 3;
          std::vector<float> y(n_tok * n_out);
          ops::detail::matmul(w, x.data(), n_tok, y.data(), pool, opt);
          ASSERT_EQ(0, std::memcmp(y.data(), single.data(), y.size() * sizeof(float)))
              << dtype_info(t).name << " bits=" << bits << " tile " << R << "x" << T;
        }
      }
    }
  }
}

// A weight packed for the active kernels computes exactly what its file layout computes (Q4_0 in
// R8B: to f32 rounding, and then bit for bit the same whatever the tile or batch); the file view
// stays valid for everything else (get_rows, the scalar path, another ISA).
TEST_P(MatmulIsa, PackedWeightsEqualTheFileLayoutBitForBit) {
  cpu::ThreadPool pool(2);
  std::mt19937 rng(13);
  for (int bits : {16, 8}) {
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q6_K}) {
      // 7 rows: G4 (AVX-512) only; 24 rows: also R8 (AVX2, groups of 8 rows)
      for (int64_t n_out : {7, 24}) {
        for (int64_t n_in : inner_sizes(t)) {
          const auto raw = test::random_weights(t, n_out, n_in, rng);
          TensorView w = test::view(t, raw, n_in, n_out);
          w.act_bits = static_cast<uint8_t>(bits);
          const TensorView plain = w;
          ops::PackedWeights store;
          const bool packed = store.pack(w);
          const uint8_t layout = cpu::preferred_packing(t, n_out, false, bits);
          EXPECT_EQ(packed, layout != cpu::kPackNone);
          EXPECT_EQ(packed, w.packed != nullptr);
          EXPECT_EQ(store.bytes(), packed ? raw.size() : 0u);
          if (GetParam() == cpu::Isa::Avx512) {
            EXPECT_EQ(packed, t != DType::Q6_K);
          } else {
            EXPECT_EQ(packed, t != DType::Q6_K && n_out % 8 == 0);
          }
          if (packed && n_in >= 128) {
            EXPECT_NE(0, std::memcmp(w.packed, raw.data(), raw.size())) << "the layout should differ";
          }
          const cpu::TileKernels* k = packed ? cpu::simd_kernels_packed(t, layout, bits) : nullptr;
          if (packed) {
            ASSERT_NE(k, nullptr);
          }
          // Q4_0 in R8B (AVX2, 8-bit levels) adds its -8 offset inside the integer dot, where the
          // file-layout tiles add it in f32: the same sum to f32 rounding, not bit for bit.
          const bool exact = !(t == DType::Q4_0 && layout == cpu::kPackR8B);
          for (int64_t n_tok : {1, 5, 13}) {
            const auto x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
            std::vector<float> b(n_tok * n_out);
            ops::detail::matmul(plain, x.data(), n_tok, b.data(), pool, {});
            if (!exact) {  // b := the packed result of single tokens, once checked against the file's
              std::vector<float> single(n_tok * n_out);
              const auto wd = test::dequant_all(plain);
              for (int64_t tk = 0; tk < n_tok; ++tk) {
                ops::detail::matmul(w, x.data() + tk * n_in, 1, single.data() + tk * n_out, pool, {});
                for (int64_t r = 0; r < n_out; ++r) {
                  const double absdot = test::abs_dot(wd.data() + r * n_in, x.data() + tk * n_in, n_in);
                  ASSERT_NEAR(single[tk * n_out + r], b[tk * n_out + r], 1e-6 * absdot + 1e-6)
                      << dtype_info(t).name << " n_in=" << n_in << " t=" << tk << " r=" << r;
                }
              }
              b = single;
            }
            // the preferred tile, then every other tile of the packed kernels (edges included)
            std::vector<std::pair<int, int>> tiles = {{0, 0}};
            for (int R = 1; k && R <= cpu::kMaxTileR; ++R) {
              for (int T = 1; T <= cpu::kMaxTileT; ++T) {
                if (k->fn[R - 1][T - 1]) tiles.emplace_back(R, T);
              }
            }
            for (const auto& [R, T] : tiles) {
              ops::detail::MatmulOptions opt;
              opt.tile_r = R;
              opt.tile_t = T;
              std::vector<float> a(n_tok * n_out);
              ops::detail::matmul(w, x.data(), n_tok, a.data(), pool, opt);
              ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
                  << dtype_info(t).name << " bits=" << bits << " n_out=" << n_out << " n_in=" << n_in
                  << " n_tok=" << n_tok << " tile " << R << "x" << T;
            }
          }
        }
      }
    }
  }
}

// A weight w packed in an interleaved layout (row_unit rows per tile, plain: its file view) against
// x[n_tok][n_in]: each token alone matches the file layout's result and the scalar reference's to
// f32 rounding (1e-6 of sum |w x|), and every 1 x T tile of the packed kernels gives those bits.
void expect_packed_matches_file(const TensorView& w, const TensorView& plain, const std::vector<float>& x,
                                int64_t n_tok, cpu::ThreadPool& pool, const std::string& what) {
  const int64_t n_in = w.ne[0], n_out = w.rows();
  std::vector<float> file(n_tok * n_out), single(n_tok * n_out), yq(n_tok * n_out);
  ops::detail::matmul(plain, x.data(), n_tok, file.data(), pool, {});
  ops::ref::matmul_quant(plain, x.data(), n_tok, yq.data());  // the scalar reference
  for (int64_t tk = 0; tk < n_tok; ++tk) {
    ops::detail::matmul(w, x.data() + tk * n_in, 1, single.data() + tk * n_out, pool, {});
  }
  const auto wd = test::dequant_all(plain);
  for (int64_t tk = 0; tk < n_tok; ++tk) {
    for (int64_t r = 0; r < n_out; ++r) {
      const double absdot = test::abs_dot(wd.data() + r * n_in, x.data() + tk * n_in, n_in);
      ASSERT_NEAR(single[tk * n_out + r], file[tk * n_out + r], 1e-6 * absdot + 1e-6)
          << what << " t=" << tk << " r=" << r;
      ASSERT_NEAR(single[tk * n_out + r], yq[tk * n_out + r], 1e-6 * absdot + 1e-6)
          << "reference, " << what << " t=" << tk << " r=" << r;
    }
  }
  const cpu::TileKernels* k = cpu::simd_kernels_packed(w.type, w.packing, w.act_bits);
  ASSERT_NE(k, nullptr) << what;
  for (int T = 1; T <= cpu::kMaxTileT; ++T) {
    if (!k->fn[0][T - 1]) continue;
    ops::detail::MatmulOptions opt;
    opt.tile_r = 1;
    opt.tile_t = T;
    std::vector<float> y(n_tok * n_out);
    ops::detail::matmul(w, x.data(), n_tok, y.data(), pool, opt);
    ASSERT_EQ(0, std::memcmp(y.data(), single.data(), y.size() * sizeof(float))) << what << " tile 1x" << T;
  }
}

// Q4_K with 8-bit levels is packed on AVX2 (R8B: 8 rows interleaved, scales and mins re-split).
// Its tiles sum the same integer terms as the file-layout tiles in another order, so the packed
// result matches theirs and the scalar reference's to f32 rounding (1e-6 of sum |w x|), and a
// token's result is bit for bit the same whatever tile or batch computes it; the integer bounds
// hold at their limit.
TEST_P(MatmulIsa, PackedQ4KWithEightBitLevelsMatchesTheFileLayoutWhateverTheBatch) {
  if (cpu::preferred_packing(DType::Q4_K, 8, false, 8) == cpu::kPackNone) {
    GTEST_SKIP() << cpu::isa_name(GetParam()) << " keeps Q4_K in the file layout";
  }
  EXPECT_EQ(cpu::preferred_packing(DType::Q4_K, 8, false, 16), cpu::kPackNone);
  EXPECT_EQ(cpu::preferred_packing(DType::Q4_K, 12, false, 8), cpu::kPackNone);
  cpu::ThreadPool pool(2);
  std::mt19937 rng(17);
  for (int64_t n_in : {256, 768}) {
    for (bool extreme : {false, true}) {
      const int64_t n_out = 24, n_tok = 7;
      auto raw = test::random_weights(DType::Q4_K, n_out, n_in, rng);
      if (extreme) {  // every nibble 15, every scale and min 63
        for (size_t b = 0; b < raw.size() / sizeof(ops::BlockQ4_K); ++b) {
          auto* blk = reinterpret_cast<ops::BlockQ4_K*>(raw.data()) + b;
          std::memset(blk->scales, 0xff, sizeof(blk->scales));
          std::memset(blk->qs, 0xff, sizeof(blk->qs));
        }
      }
      TensorView w = test::view(DType::Q4_K, raw, n_in, n_out);
      w.act_bits = 8;
      const TensorView plain = w;
      ops::PackedWeights store;
      ASSERT_TRUE(store.pack(w));
      EXPECT_EQ(store.bytes(), raw.size());
      EXPECT_NE(0, std::memcmp(w.packed, raw.data(), raw.size()));
      std::vector<float> x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
      if (extreme) {
        for (int64_t i = 0; i < n_tok * n_in; ++i) x[i] = (i % 3 == 0 ? -1.0f : 1.0f);  // |q| = 127
      }
      expect_packed_matches_file(w, plain, x, n_tok, pool,
                                 "Q4_K n_in=" + std::to_string(n_in) + " extreme=" + std::to_string(extreme));
    }
  }
}

// Q4_0, Q4_1, Q8_0, Q4_K and Q6_K with 16 rows at a time are packed on AVX-512 (R16B: 16 rows interleaved,
// lanes are rows) for both activation precisions. The tiles sum the same integer terms as the file-layout
// tiles in another order, so the packed result matches theirs and the scalar reference's to f32
// rounding (1e-6 of sum |w x|), a token's result is bit for bit the same whatever tile or batch
// computes it, and the integer bounds hold at their limit (every nibble 15 or every Q8_0 weight -128,
// every Q4_K scale and min 63, every Q6_K value -32 with scale -128, |q| at its maximum).
TEST_P(MatmulIsa, R16BWeightsMatchTheFileLayoutWhateverTheBatch) {
  if (cpu::preferred_packing(DType::Q4_0, 16, false, 16) != cpu::kPackR16B) {
    GTEST_SKIP() << cpu::isa_name(GetParam()) << " has no R16B tiles";
  }
  for (int bits : {16, 8}) {
    EXPECT_EQ(cpu::preferred_packing(DType::Q4_1, 32, false, bits), cpu::kPackR16B);
    EXPECT_EQ(cpu::preferred_packing(DType::Q8_0, 32, false, bits), cpu::kPackR16B);
    EXPECT_EQ(cpu::preferred_packing(DType::Q4_K, 32, false, bits), cpu::kPackR16B);
    EXPECT_EQ(cpu::preferred_packing(DType::Q6_K, 32, false, bits), cpu::kPackR16B);
    EXPECT_EQ(cpu::preferred_packing(DType::Q4_1, 24, false, bits), cpu::kPackG4);  // not 16 rows at a time
    EXPECT_EQ(cpu::preferred_packing(DType::Q4_K, 24, false, bits), cpu::kPackNone);
  }
  cpu::ThreadPool pool(2);
  std::mt19937 rng(19);
  for (int bits : {16, 8}) {
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
      for (int64_t n_in : inner_sizes(t)) {
        for (bool extreme : {false, true}) {
          const int64_t n_out = 48, n_tok = 13;
          auto raw = test::random_weights(t, n_out, n_in, rng);
          if (extreme && t == DType::Q6_K) {  // every value 0 - 32, every scale -128
            for (size_t b = 0; b < raw.size() / sizeof(ops::BlockQ6_K); ++b) {
              auto* blk = reinterpret_cast<ops::BlockQ6_K*>(raw.data()) + b;
              std::memset(blk->ql, 0, sizeof(blk->ql));
              std::memset(blk->qh, 0, sizeof(blk->qh));
              std::memset(blk->scales, 0x80, sizeof(blk->scales));
            }
          } else if (extreme) {  // every nibble 15 (Q4_K: every scale and min 63); every Q8_0 weight -128
            const int64_t bb = dtype_info(t).block_bytes, qs = t == DType::Q4_1 || t == DType::Q4_K ? 4 : 2;
            for (size_t b = 0; b < raw.size() / bb; ++b) {
              std::memset(raw.data() + b * bb + qs, t == DType::Q8_0 ? 0x80 : 0xff, bb - qs);
            }
          }
          TensorView w = test::view(t, raw, n_in, n_out);
          w.act_bits = static_cast<uint8_t>(bits);
          const TensorView plain = w;
          ops::PackedWeights store;
          ASSERT_TRUE(store.pack(w));
          EXPECT_EQ(w.packing, cpu::kPackR16B);
          EXPECT_EQ(store.bytes(), raw.size());
          EXPECT_NE(0, std::memcmp(w.packed, raw.data(), raw.size()));
          std::vector<float> x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
          if (extreme) {
            for (int64_t i = 0; i < n_tok * n_in; ++i) x[i] = (i % 3 == 0 ? -1.0f : 1.0f);  // |q| at qmax
          }
          EXPECT_EQ(cpu::simd_kernels_packed(t, w.packing, bits)->row_unit, 16);
          expect_packed_matches_file(w, plain, x, n_tok, pool,
                                     std::string(dtype_info(t).name) + " bits=" + std::to_string(bits) +
                                         " n_in=" + std::to_string(n_in) + " extreme=" + std::to_string(extreme));
        }
      }
    }
  }
}

// 8-bit levels: each activation block is rounded to amax / 127 steps, so a result is within
// sum_b (sum_{i in b} |w_i|) * amax_b / 254 of the exact f32 product (plus f32 rounding); and it
// differs from the 16-bit result (the option does something).
TEST_P(MatmulIsa, EightBitActivationsStayWithinTheirRoundingBound) {
  cpu::ThreadPool pool(2);
  std::mt19937 rng(14);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K}) {
    const int64_t n_in = inner_sizes(t).back(), n_out = 9, n_tok = 4;
    const int block = dtype_info(t).block == 256 ? 256 : 32;
    const auto raw = test::random_weights(t, n_out, n_in, rng);
    TensorView w = test::view(t, raw, n_in, n_out);
    const auto x = test::random_floats(static_cast<size_t>(n_tok * n_in), rng);
    std::vector<float> y8(n_tok * n_out), y16(n_tok * n_out), yf(n_tok * n_out);
    ops::detail::matmul(w, x.data(), n_tok, y16.data(), pool, {});
    w.act_bits = 8;
    ops::detail::matmul(w, x.data(), n_tok, y8.data(), pool, {});
    ops::ref::matmul_f32(w, x.data(), n_tok, yf.data());
    const auto wd = test::dequant_all(w);
    int n_diff = 0;
    for (int64_t tk = 0; tk < n_tok; ++tk) {
      for (int64_t r = 0; r < n_out; ++r) {
        const float* wr = wd.data() + r * n_in;
        const float* xr = x.data() + tk * n_in;
        double bound = 1e-5 * test::abs_dot(wr, xr, n_in) + 1e-6;
        for (int64_t b = 0; b < n_in; b += block) {
          double sw = 0, amax = 0;
          for (int i = 0; i < block; ++i) sw += std::fabs(wr[b + i]), amax = std::fmax(amax, std::fabs(xr[b + i]));
          bound += sw * amax / 254.0 * 1.01;
        }
        const size_t i = tk * n_out + r;
        ASSERT_NEAR(y8[i], yf[i], bound) << dtype_info(t).name << " t=" << tk << " r=" << r;
        n_diff += y8[i] != y16[i];
      }
    }
    EXPECT_GT(n_diff, n_tok * n_out / 2) << dtype_info(t).name;
  }
}

// Q4_K with 8-bit levels (AVX-512 and AVX2) reads Q8K rows of ActQ8K super-blocks: the integers
// and sums of quantize_row_q16k (qmax 127) as bytes in the chunk order of ops/qblocks.h; Q6_K keeps
// its ActQ16K tiles, and 16-bit levels have no Q8K rows.
TEST_P(MatmulIsa, Q4KEightBitRowsHoldTheQ16KIntegersInNibbleOrder) {
  const cpu::TileKernels* k8 = cpu::simd_kernels(DType::Q4_K, 8);
  const cpu::TileKernels* k16 = cpu::simd_kernels(DType::Q4_K, 16);
  ASSERT_NE(k8, nullptr);
  ASSERT_NE(k16, nullptr);
  EXPECT_EQ(k16->act, cpu::ActFormat::Native);
  EXPECT_EQ(cpu::simd_kernels(DType::Q6_K, 8)->act, cpu::ActFormat::Native);
  EXPECT_EQ(k8->act, cpu::ActFormat::Q8K);
  std::mt19937 rng(16);
  const int64_t n = 768, nb = n / 256;
  auto x = test::random_floats(n, rng);
  for (int i = 0; i < 32; ++i) x[256 + i] = 0.0f;  // a zero sub-block
  std::vector<ops::ActQ16K> ref(nb);
  ops::ref::quantize_row_q16k(x.data(), ref.data(), n, ops::kActQ8Max);
  std::vector<uint8_t> row(nb * sizeof(ops::ActQ8K));
  cpu::quantize_row_q8k(x.data(), row.data(), n, ops::kActQ8Max);
  const auto* q8 = reinterpret_cast<const ops::ActQ8K*>(row.data());
  for (int64_t b = 0; b < nb; ++b) {
    EXPECT_EQ(q8[b].d, ref[b].d);
    for (int j = 0; j < 7; ++j) EXPECT_EQ(q8[b].pad[j], 0.0f);
    for (int j = 0; j < 8; ++j) EXPECT_EQ(q8[b].ms[j], ref[b].d * static_cast<float>(ref[b].sums[j]));
    for (int c = 0; c < 4; ++c) {
      for (int i = 0; i < 64; ++i) {
        const int sb = 4 * (c / 2) + c % 2 + (i < 32 ? 0 : 2);
        ASSERT_EQ(q8[b].qs[64 * c + i], ref[b].qs[32 * sb + i % 32]) << "b=" << b << " c=" << c << " i=" << i;
      }
    }
  }
  EXPECT_THROW(cpu::quantize_row_q8k(x.data(), row.data(), n, ops::kActQ16Max), InvalidArgument);

  // The integer bounds at their limit: every nibble 15, every scale and min 63, |q| = 127.
  const int64_t n_out = 2;
  std::vector<uint8_t> raw(n_out * nb * sizeof(ops::BlockQ4_K), 0xff);
  for (int64_t b = 0; b < n_out * nb; ++b) {
    auto* blk = reinterpret_cast<ops::BlockQ4_K*>(raw.data()) + b;
    blk->d = 0x3c00;     // 1.0
    blk->dmin = 0x3800;  // 0.5
  }
  TensorView w = test::view(DType::Q4_K, raw, n, n_out);
  w.act_bits = 8;
  std::vector<float> xs(2 * n);
  for (int64_t i = 0; i < n; ++i) xs[i] = 1.0f, xs[n + i] = i % 2 ? -1.0f : 1.0f;
  std::vector<float> y(2 * n_out), yq(2 * n_out);
  cpu::ThreadPool pool(1);
  ops::detail::matmul(w, xs.data(), 2, y.data(), pool, {});
  ops::ref::matmul_quant(w, xs.data(), 2, yq.data());
  for (int i = 0; i < 2 * n_out; ++i) EXPECT_NEAR(y[i], yq[i], 1e-6 * std::fabs(yq[i]) + 1e-3) << i;
}

// Q4_K and Q6_K in R16B (AVX-512) read Q16XK rows of ActQ16XK super-blocks: the integers and sums
// of quantize_row_q16k split into bytes in value order, 256 h + l == q with h signed and l in
// 0..255 (16-bit levels), h == q and l == 0 (8-bit levels); the sums exactly as f32, and -32 times
// the sums of 16 values.
TEST_P(MatmulIsa, Q4KSplitRowsHoldTheQ16KIntegers) {
  std::mt19937 rng(18);
  const int64_t n = 768, nb = n / 256;
  auto x = test::random_floats(n, rng);
  for (int i = 0; i < 32; ++i) x[256 + i] = 0.0f;  // a zero sub-block
  x[600] = -3.0f;                                  // q near -32767 in the last super-block
  for (int qmax : {ops::kActQ16Max, ops::kActQ8Max}) {
    std::vector<ops::ActQ16K> ref(nb);
    ops::ref::quantize_row_q16k(x.data(), ref.data(), n, qmax);
    std::vector<ops::ActQ16XK> row(nb);
    cpu::quantize_row_q16xk(x.data(), row.data(), n, qmax);
    for (int64_t b = 0; b < nb; ++b) {
      EXPECT_EQ(row[b].d, ref[b].d);
      for (int j = 0; j < 7; ++j) EXPECT_EQ(row[b].pad[j], 0.0f);
      for (int j = 0; j < 8; ++j) EXPECT_EQ(row[b].sums[j], static_cast<float>(ref[b].sums[j]));
      for (int i = 0; i < 16; ++i) {
        int32_t sum = 0;
        for (int v = 0; v < 16; ++v) sum += ref[b].qs[16 * i + v];
        EXPECT_EQ(row[b].off16[i], -32 * sum);
      }
      for (int i = 0; i < 256; ++i) {
        const int q = ref[b].qs[i];
        if (qmax == ops::kActQ16Max) {
          ASSERT_EQ(256 * row[b].h[i] + row[b].l[i], q) << "b=" << b << " i=" << i;
        } else {
          ASSERT_EQ(row[b].h[i], q) << "b=" << b << " i=" << i;
          ASSERT_EQ(row[b].l[i], 0) << "b=" << b << " i=" << i;
        }
      }
    }
    if (qmax == ops::kActQ16Max) {
      EXPECT_LT(ref[2].qs[600 - 512], -32512);  // h = -128
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, MatmulIsa, ::testing::Values(cpu::Isa::Avx2, cpu::Isa::Avx512),
                         [](const ::testing::TestParamInfo<cpu::Isa>& i) {
                           return std::string(cpu::isa_name(i.param));
                         });

TEST(MatmulIsa, AKnownLayoutOnlyAndAScalarCapMeansNoKernels) {
  std::vector<uint8_t> src(64), dst(64);
  EXPECT_THROW(cpu::pack_rows(DType::F16, cpu::kPackG4, src.data(), dst.data(), 1, 32), InvalidArgument);
  EXPECT_THROW(cpu::pack_rows(DType::Q4_0, 7, src.data(), dst.data(), 1, 32), InvalidArgument);
  TensorView bad;
  bad.act_bits = 4;
  bad.type = DType::Q4_0;
  bad.n_dims = 2;
  bad.ne[0] = 32;
  std::vector<float> x(32), y(1);
  bad.data = src.data();
  cpu::ThreadPool pool(1);
  EXPECT_THROW(ops::detail::matmul(bad, x.data(), 1, y.data(), pool, {}), InvalidArgument);
  IsaScope scalar(cpu::Isa::Scalar);
  EXPECT_EQ(cpu::active_isa(), cpu::Isa::Scalar);
  EXPECT_EQ(cpu::simd_kernels(DType::Q4_0), nullptr);
  EXPECT_EQ(cpu::preferred_packing(DType::Q4_0), cpu::kPackNone);
}

}  // namespace

namespace {

// matmul_group (Q/K/V, gate/up) gives each output exactly what its own matmul gives, for
// groupable weights (same type and inner size) and for mixed ones, any token count.
TEST_P(MatmulIsa, GroupEqualsSeparateMatmulsBitForBit) {
  cpu::ThreadPool pool(2);
  std::mt19937 rng(15);
  const int64_t n_in = 576;
  struct W {
    DType t;
    int64_t rows;
  };
  for (const auto& set : {std::vector<W>{{DType::Q4_0, 37}, {DType::Q4_0, 5}, {DType::Q4_0, 9}},
                          std::vector<W>{{DType::Q4_K, 0}, {DType::Q4_K, 11}},
                          std::vector<W>{{DType::Q8_0, 13}, {DType::F16, 7}, {DType::Q4_1, 3}, {DType::Q8_0, 2}}}) {
    for (int64_t n_tok : {1, 6, 70}) {
      const int64_t n = static_cast<int64_t>(set.size());
      std::vector<std::vector<uint8_t>> raws;
      std::vector<TensorView> ws;
      for (const W& w : set) {
        const int64_t in = dtype_info(w.t).block == 256 ? 768 : n_in;
        raws.push_back(test::random_weights(w.t, std::max<int64_t>(w.rows, 1), in, rng));
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t in = dtype_info(set[i].t).block == 256 ? 768 : n_in;
        ws.push_back(test::view(set[i].t, raws[i], in, std::max<int64_t>(set[i].rows, 1)));
      }
      const int64_t in = ws[0].ne[0];
      bool same_in = true;
      for (const TensorView& w : ws) same_in = same_in && w.ne[0] == in;
      if (!same_in) continue;
      const auto x = test::random_floats(static_cast<size_t>(n_tok * in), rng);
      std::vector<std::vector<float>> ya(n), yb(n);
      const TensorView* wp[4];
      float* yp[4];
      for (int64_t i = 0; i < n; ++i) {
        ya[i].assign(n_tok * ws[i].rows(), NAN);
        yb[i].assign(n_tok * ws[i].rows(), NAN);
        ops::detail::matmul(ws[i], x.data(), n_tok, yb[i].data(), pool, {});
        wp[i] = &ws[i];
        yp[i] = ya[i].data();
      }
      ops::detail::matmul_group(wp, yp, static_cast<int>(n), x.data(), n_tok, pool, {});
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(0, std::memcmp(ya[i].data(), yb[i].data(), ya[i].size() * sizeof(float)))
            << "weight " << i << " " << dtype_info(ws[i].type).name << " n_tok=" << n_tok;
      }
    }
  }
}

}  // namespace
