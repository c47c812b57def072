// The AVX-512 attention kernels of 2-bit and 4-bit rows (quant_avx512.cpp) and the AVX2 kernels on the same
// inputs, each against the products computed in double on the dequantized rows, with the same
// tolerance (1e-5 of the sum of |terms|): they differ by float rounding only (the AVX-512 scores
// sum each row in two chains of even and odd codes, the AVX2 ones in 8 lanes). A row's score does not depend on the
// lane it takes in a 16-row pass. Skipped, with the reason, on a CPU or build without AVX-512.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "cpu/isa.h"
#include "kv/kv_options.h"
#include "kv/quant.h"

namespace {

using akvq::cpu::Isa;
using akvq::kv::Levels;
using akvq::kv::QuantSpec;
using akvq::kv::RowCodec;

struct IsaCap {
  explicit IsaCap(Isa cap) { akvq::cpu::set_isa_cap(cap); }
  ~IsaCap() { akvq::cpu::set_isa_cap(Isa::Avx512); }
};

bool have_avx512() {
  return akvq::cpu::avx512_compiled() && akvq::cpu::active_isa() == Isa::Avx512;
}

struct Case {
  int n, group, nq, n_rows;
  Levels lv;
  int bits = 2;
  int pad = 3;  // bytes between rows: 3, unaligned rows (headers gathered); 0, packed rows (headers
                // read as dword vectors where the stride allows, the last row ending the buffer)
};

// Scores and accumulators of nq queries over n_rows random rows of c.bits with the kernels of `isa`,
// checked against the products in double on the dequantized rows.
void run(const Case& c, Isa isa, uint32_t seed, bool* avx512_used) {
  IsaCap cap(isa);
  QuantSpec s;
  s.bits = c.bits, s.group = c.group, s.levels = c.lv;
  s.clip = c.bits == 4 ? 1.0f : c.lv == Levels::Gaussian ? 0.9f : 0.6f;
  const RowCodec codec(s, c.n);
  *avx512_used = codec.avx512();
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  const size_t stride = codec.row_bytes() + c.pad;
  std::vector<float> x(static_cast<size_t>(c.n_rows) * c.n);
  for (auto& v : x) v = 0.2f + 1.3f * nd(rng);
  std::vector<uint8_t> rows(stride * c.n_rows);
  codec.quantize_rows(x.data(), c.n, c.n_rows, rows.data(), stride);
  const int ng = codec.n_groups();
  std::vector<float> q(static_cast<size_t>(c.nq) * c.n), qs(static_cast<size_t>(c.nq) * ng),
      p(static_cast<size_t>(c.nq) * c.n_rows);
  for (auto& v : q) v = nd(rng);
  for (auto& v : p) v = std::fabs(nd(rng));
  for (int j = 0; j < c.nq; ++j) codec.query_group_sums(&q[j * c.n], &qs[j * ng]);
  struct {
    std::vector<float> scores, acc;  // [nq, n_rows], [nq, n]
  } o{std::vector<float>(static_cast<size_t>(c.nq) * c.n_rows), std::vector<float>(static_cast<size_t>(c.nq) * c.n)};
  for (auto& v : o.acc) v = 0.5f * nd(rng);
  const std::vector<float> acc0 = o.acc;
  codec.scores_multi(q.data(), c.n, qs.data(), ng, c.nq, rows.data(), stride, c.n_rows, o.scores.data(), c.n_rows);
  codec.accumulate_multi(p.data(), c.n_rows, c.nq, rows.data(), stride, c.n_rows, o.acc.data(), c.n);
  {  // requests of other spans while accumulating change no value
    std::vector<float> acc_ahead = acc0;
    akvq::kv::RowsAhead ahead;
    ahead.p[0] = rows.data() + 1, ahead.n[0] = rows.size() - 1;
    ahead.p[1] = reinterpret_cast<const uint8_t*>(q.data()), ahead.n[1] = q.size() * sizeof(float);
    codec.accumulate_multi(p.data(), c.n_rows, c.nq, rows.data(), stride, c.n_rows, acc_ahead.data(), c.n, &ahead);
    ASSERT_EQ(0, std::memcmp(acc_ahead.data(), o.acc.data(), acc_ahead.size() * sizeof(float)));
  }

  // the same products in double on the dequantized rows
  std::vector<float> xh(x.size());
  for (int t = 0; t < c.n_rows; ++t) codec.dequantize(&rows[t * stride], &xh[static_cast<size_t>(t) * c.n]);
  const std::string what = std::to_string(c.bits) + "-bit n " + std::to_string(c.n) + " group " + std::to_string(c.group) + " " +
                           akvq::kv::levels_name(c.lv) + " nq " + std::to_string(c.nq) + " rows " +
                           std::to_string(c.n_rows) + " pad " + std::to_string(c.pad) + " isa " + akvq::cpu::isa_name(isa);
  for (int j = 0; j < c.nq; ++j) {
    for (int t = 0; t < c.n_rows; ++t) {
      double e = 0, mag = 0;
      for (int i = 0; i < c.n; ++i) {
        const double term = static_cast<double>(q[j * c.n + i]) * xh[static_cast<size_t>(t) * c.n + i];
        e += term, mag += std::fabs(term);
      }
      EXPECT_NEAR(o.scores[j * c.n_rows + t], e, 1e-5 * mag + 1e-6) << what << " score j=" << j << " t=" << t;
    }
    for (int i = 0; i < c.n; ++i) {
      double e = acc0[j * c.n + i], mag = std::fabs(e);
      for (int t = 0; t < c.n_rows; ++t) {
        const double term = static_cast<double>(p[j * c.n_rows + t]) * xh[static_cast<size_t>(t) * c.n + i];
        e += term, mag += std::fabs(term);
      }
      EXPECT_NEAR(o.acc[j * c.n + i], e, 1e-5 * mag + 1e-6) << what << " acc j=" << j << " i=" << i;
    }
  }
}

TEST(KvQuantAvx512, TwoAndFourBitKernelsAndAvx2KernelsMatchTheReference) {
  if (!have_avx512()) GTEST_SKIP() << "this CPU/build runs " << akvq::cpu::isa_name(akvq::cpu::active_isa());
  int n_cases = 0;
  uint32_t seed = 5;
  for (int bits : {2, 4})
  for (int n : {64, 128}) {
    for (int group : {16, 32, 64, 128}) {
      if (n % group != 0) continue;
      for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
        for (int nq = 1; nq <= akvq::kv::kMaxQueries; ++nq) {
          for (int n_rows : {1, 15, 16, 17, 64, 100})
          for (int pad : {3, 0}) {
            const Case c{n, group, nq, n_rows, lv, bits, pad};
            bool wide = false, narrow = true;
            run(c, Isa::Avx512, seed, &wide);
            run(c, Isa::Avx2, seed, &narrow);
            ASSERT_TRUE(wide) << "AVX-512 kernels not chosen for " << bits << "-bit n " << n << " group " << group;
            ASSERT_FALSE(narrow) << "AVX-512 kernels chosen under an AVX2 cap";
            ++seed, ++n_cases;
          }
        }
      }
    }
  }
  EXPECT_EQ(n_cases, 2 * 2 * (3 + 4) * akvq::kv::kMaxQueries * 6 * 2);  // bits × levels × (n, group) × nq × rows × pad
}

TEST(KvQuantAvx512, ServesTwoAndFourBits) {
  if (!have_avx512()) GTEST_SKIP() << "this CPU/build runs " << akvq::cpu::isa_name(akvq::cpu::active_isa());
  for (int bits : {2, 4}) {
    QuantSpec s;
    s.bits = bits;
    EXPECT_TRUE(RowCodec(s, 64).avx512()) << bits;
    s.group = 8;  // not a multiple of 16: AVX2
    EXPECT_FALSE(RowCodec(s, 64).avx512()) << bits;
  }
  for (int bits : {3, 8}) {
    QuantSpec s;
    s.bits = bits;
    EXPECT_FALSE(RowCodec(s, 64).avx512()) << bits;
  }
}

// A row's score is the same bits whether it takes lane 0 or lane 13 of a 16-row pass, and
// whatever the other rows of the call.
TEST(KvQuantAvx512, ScoresDoNotDependOnTheLane) {
  if (!have_avx512()) GTEST_SKIP() << "this CPU/build runs " << akvq::cpu::isa_name(akvq::cpu::active_isa());
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int bits : {2, 4})
  for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
    QuantSpec s;
    s.bits = bits, s.levels = lv, s.group = 32, s.clip = 0.9f;
    const RowCodec codec(s, 64);
    ASSERT_TRUE(codec.avx512());
    const int n_rows = 40;
    const size_t rb = codec.row_bytes();
    std::vector<float> x(static_cast<size_t>(n_rows) * 64), q(64), qs(codec.n_groups());
    for (auto& v : x) v = nd(rng);
    for (auto& v : q) v = nd(rng);
    codec.query_group_sums(q.data(), qs.data());
    std::vector<uint8_t> rows(rb * n_rows);
    codec.quantize_rows(x.data(), 64, n_rows, rows.data(), rb);
    std::vector<float> all(n_rows);
    codec.scores(q.data(), qs.data(), rows.data(), rb, n_rows, all.data());
    for (int start : {1, 3, 13, 16, 29}) {
      std::vector<float> part(n_rows - start);
      codec.scores(q.data(), qs.data(), rows.data() + start * rb, rb, n_rows - start, part.data());
      EXPECT_EQ(0, std::memcmp(part.data(), all.data() + start, part.size() * sizeof(float)))
          << bits << "-bit start " << start;
    }
  }
}

// pv_bf16: on for the V rows of the modes with packed rows (not kivi2, not K), resolved and
// switchable; a codec takes the bf16 pairs only for the 2- and 4-bit rows that the AVX-512
// kernels serve.
TEST(KvQuantAvx512, PvBf16OptionAndTheCodecsThatTakeIt) {
  const auto on = akvq::kv::resolve_kv_options("akvq2", {}, 4, 64, nullptr);
  EXPECT_EQ(on.resolved.at("pv_bf16"), "1");
  EXPECT_TRUE(on.v_low.pv_bf16 && on.v_tsa.pv_bf16);
  EXPECT_FALSE(on.k_low.pv_bf16 || on.k_tsa.pv_bf16) << "K rows are scored, not accumulated";
  const auto off = akvq::kv::resolve_kv_options("akvq2", {{"pv_bf16", "0"}}, 4, 64, nullptr);
  EXPECT_EQ(off.resolved.at("pv_bf16"), "0");
  EXPECT_FALSE(off.v_low.pv_bf16);
  EXPECT_FALSE(RowCodec(off.v_low, 64).pv_bf16());
  EXPECT_THROW(akvq::kv::resolve_kv_options("kivi2", {{"pv_bf16", "1"}}, 4, 64, nullptr), akvq::InvalidArgument);
  try {
    akvq::kv::resolve_kv_options("akvq2", {{"pv_bf16", "perhaps"}}, 4, 64, nullptr);
    FAIL() << "pv_bf16=perhaps accepted";
  } catch (const akvq::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'pv_bf16'"), std::string::npos) << e.what();
  }
  {
    IsaCap cap(Isa::Avx2);
    EXPECT_FALSE(RowCodec(on.v_low, 64).pv_bf16()) << "the AVX2 kernels keep fp32 products";
  }
  if (!have_avx512()) GTEST_SKIP() << "this CPU/build runs " << akvq::cpu::isa_name(akvq::cpu::active_isa());
  EXPECT_TRUE(RowCodec(on.v_low, 64).pv_bf16());
  EXPECT_TRUE(RowCodec(on.v_low, 128).pv_bf16());
  EXPECT_TRUE(RowCodec(on.v_tsa, 64).pv_bf16()) << "4-bit text rows";
  QuantSpec three = on.v_low;
  three.bits = 3, three.levels = akvq::kv::Levels::Uniform;
  EXPECT_FALSE(RowCodec(three, 64).pv_bf16()) << "3-bit rows: no AVX-512 kernels, fp32 products";
}

}  // namespace
