// Scores of 2-bit rows from 8-bit pair tables (QuantSpec::lut, ref::scores_lut, the AVX2 and NEON
// kernels of quant_lut_avx2.cpp / quant_lut_neon.cpp): the kernels equal the scalar definition bit for bit on every shape they
// split into cases (row lengths 64..256, 1..4 queries, partial blocks of 32 rows, padded strides,
// constant rows, a zero query); the definition stays within its stated bound of the exact products
// q·x̂; its error is a small fraction of the 2-bit codes' own; a row's score does not depend on the
// rows or queries beside it; and the kv option `lut` turns it on and off.
#include <gtest/gtest.h>

#include <akvq/error.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "cpu/isa.h"
#include "kv/kv_options.h"
#include "kv/quant.h"

namespace {

using akvq::kv::kMaxQueries;
using akvq::kv::Levels;
using akvq::kv::QuantSpec;
using akvq::kv::RowCodec;

// rows of one group of n values (the default group of n > 128 is smaller)
QuantSpec lut_spec(Levels lv, int n) {
  QuantSpec s;
  s.bits = 2, s.group = n, s.levels = lv, s.lut = true, s.clip = lv == Levels::Gaussian ? 0.9f : 0.6f;
  return s;
}

struct Rows {
  size_t stride = 0;
  std::vector<uint8_t> bytes;
  std::vector<float> x, xh;  // original and dequantized values [n_rows, n]
};

// n_rows rows of n values (row 1 constant when there are more than 2), quantized with stride
// row_bytes + pad.
Rows make_rows(const RowCodec& codec, int n_rows, int pad, std::mt19937& rng) {
  const int n = codec.n();
  Rows r;
  r.stride = codec.row_bytes() + pad;
  std::normal_distribution<float> nd;
  r.x.resize(static_cast<size_t>(n_rows) * n);
  for (auto& v : r.x) v = 0.3f + 1.7f * nd(rng);
  if (n_rows > 2) {
    for (int i = 0; i < n; ++i) r.x[static_cast<size_t>(n) + i] = -0.625f;
  }
  r.bytes.assign(r.stride * n_rows + 5, 0xA5);
  codec.quantize_rows(r.x.data(), n, n_rows, r.bytes.data(), r.stride);
  r.xh.resize(r.x.size());
  for (int t = 0; t < n_rows; ++t) codec.dequantize(&r.bytes[t * r.stride], &r.xh[static_cast<size_t>(t) * n]);
  return r;
}

float group_sum(const float* q, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += q[i];
  return s;
}

// On an AVX-512 machine a 2-bit codec of one group takes its scores from the tables and its
// accumulation from the AVX-512 kernels; `lut = false` gives it the AVX-512 float scores.
TEST(KvQuantLut, Avx512MachinesScoreFromTheTablesToo) {
  for (int n : {64, 128, 256}) {
    const RowCodec codec(lut_spec(Levels::Gaussian, n), n);
    if (!codec.avx512()) GTEST_SKIP() << "the AVX-512 attention kernels do not run on this CPU/build";
    EXPECT_TRUE(codec.lut_scores()) << "n " << n;
    QuantSpec off = lut_spec(Levels::Gaussian, n);
    off.lut = false;
    const RowCodec exact(off, n);
    EXPECT_TRUE(exact.avx512() && !exact.lut_scores()) << "n " << n;
  }
}

// Every table kernel the CPU runs (AVX-512: 64 rows per block; AVX2: 32; NEON: 16), on row counts
// around their blocks.
TEST(KvQuantLut, KernelsEqualTheDefinitionBitForBit) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  int n_cases = 0, n_isas = 0;
  for (akvq::cpu::Isa isa : {akvq::cpu::Isa::Avx512, akvq::cpu::Isa::Avx2, akvq::cpu::Isa::Neon}) {
    akvq::cpu::set_isa_cap(isa);
    const bool runs = akvq::cpu::active_isa() == isa;
    if (runs) ++n_isas;
    for (Levels lv : {Levels::Gaussian, Levels::Uniform}) {
      for (int n : {64, 128, 192, 256}) {
        const RowCodec codec(lut_spec(lv, n), n);
        if (!runs || !codec.lut_scores()) continue;
        EXPECT_EQ(codec.lut_avx512(), isa == akvq::cpu::Isa::Avx512);
        for (int nq = 1; nq <= kMaxQueries; ++nq) {
          for (int n_rows : {1, 5, 31, 32, 33, 63, 64, 65, 67, 100, 130}) {
            const Rows r = make_rows(codec, n_rows, n_rows % 3, rng);
            const size_t qst = n + 3, ost = n_rows + 2;
            std::vector<float> q(qst * nq), qsum(2 * nq);
            for (auto& v : q) v = (nq == 2 ? 40.0f : 1.0f) * nd(rng);
            if (nq == 3) std::fill(q.begin() + qst, q.begin() + qst + n, 0.0f);  // query 1: all zero
            for (int j = 0; j < nq; ++j) qsum[2 * j] = group_sum(&q[j * qst], n);
            std::vector<float> out(ost * nq, -7.0f), out_ahead(out);
            codec.scores_multi(q.data(), qst, qsum.data(), 2, nq, r.bytes.data(), r.stride, n_rows, out.data(), ost);
            // requests of other spans while scoring change no value
            akvq::kv::RowsAhead ahead;
            ahead.p[0] = r.bytes.data() + 1, ahead.n[0] = r.bytes.size() - 1;
            ahead.p[1] = reinterpret_cast<const uint8_t*>(q.data()), ahead.n[1] = q.size() * sizeof(float);
            codec.scores_multi(q.data(), qst, qsum.data(), 2, nq, r.bytes.data(), r.stride, n_rows, out_ahead.data(),
                               ost, &ahead);
            ASSERT_EQ(0, std::memcmp(out.data(), out_ahead.data(), out.size() * sizeof(float)))
                << akvq::cpu::isa_name(isa) << " n " << n << " nq " << nq << " rows " << n_rows;
            // tables built once beforehand (LutQuery) give the same bits
            std::vector<akvq::kv::LutQuery> pre(nq);
            std::vector<uint64_t> tab_mem(nq * codec.lut_query_bytes() / 8 + 4);
            uint8_t* tab0 = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(tab_mem.data()) + 31) & ~uintptr_t{31});
            for (int j = 0; j < nq; ++j) pre[j] = codec.lut_prepare(&q[j * qst], tab0 + j * codec.lut_query_bytes());
            std::vector<float> out_pre(out.size(), -7.0f);
            codec.scores_multi(nullptr, qst, qsum.data(), 2, nq, r.bytes.data(), r.stride, n_rows, out_pre.data(), ost,
                               nullptr, pre.data());
            ASSERT_EQ(0, std::memcmp(out.data(), out_pre.data(), out.size() * sizeof(float)))
                << akvq::cpu::isa_name(isa) << " n " << n << " nq " << nq << " rows " << n_rows << " (prepared)";
            for (int j = 0; j < nq; ++j) {
              std::vector<float> want(n_rows);
              akvq::kv::ref::scores_lut(codec.levels(), &q[j * qst], qsum[2 * j], n, r.bytes.data(), r.stride, n_rows,
                                        want.data());
              for (int t = 0; t < n_rows; ++t) {
                ASSERT_EQ(out[j * ost + t], want[t])
                    << akvq::cpu::isa_name(isa) << " n " << n << " " << akvq::kv::levels_name(lv) << " nq " << nq
                    << " rows " << n_rows << " j " << j << " t " << t;
              }
              for (size_t t = n_rows; t < ost; ++t) ASSERT_EQ(out[j * ost + t], -7.0f) << "wrote past row " << t;
            }
            ++n_cases;
          }
        }
      }
    }
  }
  akvq::cpu::set_isa_cap(akvq::cpu::Isa::Avx512);  // no cap: the CPU's best again
  if (n_isas == 0) GTEST_SKIP() << "this CPU/build has no table kernels (AVX2, AVX-512 or NEON)";
  EXPECT_EQ(n_cases, n_isas * 2 * 4 * kMaxQueries * 11);
}

// The table kernels request each RowsAhead span in pieces, one per block of rows: the pieces
// cover every cache line of the span and reach no line outside it, whatever the span's alignment,
// length, row count and block.
TEST(KvQuantLut, RowsAheadPiecesCoverTheirSpans) {
  std::mt19937 rng(11);
  int n_cases = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const size_t n = 1 + rng() % 6000;
    const uintptr_t base = 4096 * 16 + rng() % 64;
    const int64_t n_rows = 1 + rng() % 700;
    const int block = std::array<int, 4>{1, 16, 32, 64}[rng() % 4];
    akvq::kv::RowsAhead a;
    a.p[1] = reinterpret_cast<const uint8_t*>(base), a.n[1] = n;
    const uintptr_t line0 = base & ~uintptr_t{63}, last = (base + n - 1) & ~uintptr_t{63};
    uintptr_t covered = line0;  // lines [line0, covered) requested so far
    for (int64_t t = 0; t < n_rows; t += block) {
      uintptr_t first, end;
      akvq::kv::ahead_lines(a, 1, t, std::min<int64_t>(n_rows, t + block), n_rows, first, end);
      ASSERT_EQ(first % 64, 0u);
      ASSERT_GE(first, line0) << "n " << n << " rows " << n_rows << " t " << t;
      ASSERT_LE(end, base + n) << "n " << n << " rows " << n_rows << " t " << t;
      ASSERT_LE(first, covered) << "a gap before row " << t << " (n " << n << ", rows " << n_rows << ")";
      for (uintptr_t x = first; x < end; x += 64) covered = std::max(covered, x + 64);
    }
    ASSERT_EQ(covered, last + 64) << "n " << n << " rows " << n_rows << " block " << block;
    ++n_cases;
  }
  EXPECT_EQ(n_cases, 2000);
}

TEST(KvQuantLut, DefinitionIsWithinItsBoundOfTheExactProducts) {
  // |out − q·x̂| <= |scale| · s · n/4 with s = max|T| / 127 <= max_p (|q_2p| + |q_2p+1|) · max|L'| / 127
  std::mt19937 rng(8);
  std::normal_distribution<float> nd;
  for (Levels lv : {Levels::Gaussian, Levels::Uniform}) {
    for (int n : {64, 128, 256}) {
      const RowCodec codec(lut_spec(lv, n), n);
      const float* L = codec.levels();
      const double lmax = 0.5 * (L[3] - L[0]);  // max |L'|
      const Rows r = make_rows(codec, 200, 0, rng);
      for (int trial = 0; trial < 5; ++trial) {
        std::vector<float> q(n);
        for (auto& v : q) v = (trial + 1) * nd(rng);
        double pmax = 0;
        for (int p = 0; p < n / 2; ++p) {
          pmax = std::max(pmax, std::fabs(double(q[2 * p])) + std::fabs(double(q[2 * p + 1])));
        }
        const double s = pmax * lmax / 127.0 * (1 + 1e-5);
        std::vector<float> out(200);
        akvq::kv::ref::scores_lut(L, q.data(), group_sum(q.data(), n), n, r.bytes.data(), r.stride, 200, out.data());
        double err_sum = 0;
        for (int t = 0; t < 200; ++t) {
          double e = 0, mag = 0;
          for (int i = 0; i < n; ++i) {
            const double term = double(q[i]) * r.xh[static_cast<size_t>(t) * n + i];
            e += term, mag += std::fabs(term);
          }
          uint16_t h;
          std::memcpy(&h, &r.bytes[t * r.stride], 2);
          const double scale = std::fabs(double(akvq::fp16_to_f32(h)));
          ASSERT_NEAR(out[t], e, scale * s * n / 4 + 1e-5 * mag + 1e-5)
              << "n " << n << " t " << t << " " << akvq::kv::levels_name(lv) << " trial " << trial;
          err_sum += std::fabs(out[t] - e);
        }
        EXPECT_GT(err_sum, 0.0) << "8-bit tables round: some score must differ from the exact products";
      }
    }
  }
}

TEST(KvQuantLut, ErrorIsASmallFractionOfTheCodesOwn) {
  // RMS over rows of (table score − q·x̂) against (q·x̂ − q·x): the tables add < 1/10 of the
  // error the 2-bit codes already make (measured 2-3% on Gaussian rows).
  std::mt19937 rng(13);
  std::normal_distribution<float> nd;
  for (Levels lv : {Levels::Gaussian, Levels::Uniform}) {
    const int n = 64, rows = 2000;
    const RowCodec codec(lut_spec(lv, n), n);
    const Rows r = make_rows(codec, rows, 0, rng);
    std::vector<float> q(n), out(rows);
    for (auto& v : q) v = nd(rng);
    akvq::kv::ref::scores_lut(codec.levels(), q.data(), group_sum(q.data(), n), n, r.bytes.data(), r.stride, rows,
                              out.data());
    double lut2 = 0, codes2 = 0;
    for (int t = 2; t < rows; ++t) {  // rows 0, 1: see make_rows (row 1 constant)
      double ex = 0, orig = 0;
      for (int i = 0; i < n; ++i) {
        ex += double(q[i]) * r.xh[static_cast<size_t>(t) * n + i];
        orig += double(q[i]) * r.x[static_cast<size_t>(t) * n + i];
      }
      lut2 += (out[t] - ex) * (out[t] - ex);
      codes2 += (ex - orig) * (ex - orig);
    }
    const double ratio = std::sqrt(lut2 / codes2);
    std::printf("  %s: RMS error of the tables / of the codes = %.4f\n", akvq::kv::levels_name(lv), ratio);
    EXPECT_LT(ratio, 0.1) << akvq::kv::levels_name(lv);
    EXPECT_GT(ratio, 0.0) << akvq::kv::levels_name(lv);
  }
}

TEST(KvQuantLut, DegenerateQueriesScoreAsTheDefinitionSays) {
  // tables from a tiny query (127 / max|T| overflows), an infinite or a NaN entry: zero tables, and
  // the kernels still give the definition's bits (NaN where the definition gives NaN)
  std::mt19937 rng(34);
  const int n = 64, n_rows = 40;
  const RowCodec codec(lut_spec(Levels::Gaussian, n), n);
  if (!codec.lut_scores()) GTEST_SKIP() << "this CPU/build has no table kernels";
  const Rows r = make_rows(codec, n_rows, 1, rng);
  std::vector<std::vector<float>> queries(4, std::vector<float>(n, 0.0f));
  queries[0][5] = 1e-38f;
  queries[1][5] = 3e-38f, queries[1][9] = -1e-39f;
  queries[2][3] = std::numeric_limits<float>::infinity(), queries[2][4] = 1.0f;
  queries[3][7] = std::numeric_limits<float>::quiet_NaN(), queries[3][8] = 2.0f;
  for (size_t k = 0; k < queries.size(); ++k) {
    const std::vector<float>& q = queries[k];
    const float qsum = group_sum(q.data(), n);
    std::vector<float> out(n_rows), want(n_rows);
    codec.scores(q.data(), &qsum, r.bytes.data(), r.stride, n_rows, out.data());
    akvq::kv::ref::scores_lut(codec.levels(), q.data(), qsum, n, r.bytes.data(), r.stride, n_rows, want.data());
    for (int t = 0; t < n_rows; ++t) {
      if (std::isnan(want[t])) {
        ASSERT_TRUE(std::isnan(out[t])) << "query " << k << " row " << t;
      } else {
        ASSERT_EQ(out[t], want[t]) << "query " << k << " row " << t;
      }
    }
  }
}

TEST(KvQuantLut, ARowsScoreDoesNotDependOnItsNeighbours) {
  // each row alone (any offset in a block of 32, any query slot) = the row among all of them
  std::mt19937 rng(21);
  std::normal_distribution<float> nd;
  const int n = 64, n_rows = 70;
  const RowCodec codec(lut_spec(Levels::Gaussian, n), n);
  const Rows r = make_rows(codec, n_rows, 0, rng);
  std::vector<float> q(4 * n), qsum(4);
  for (auto& v : q) v = nd(rng);
  for (int j = 0; j < 4; ++j) qsum[j] = group_sum(&q[j * n], n);
  std::vector<float> all(4 * n_rows);
  codec.scores_multi(q.data(), n, qsum.data(), 1, 4, r.bytes.data(), r.stride, n_rows, all.data(), n_rows);
  for (int j = 0; j < 4; ++j) {
    for (int t0 : {0, 3, 31, 40}) {
      std::vector<float> part(n_rows - t0);
      codec.scores(&q[j * n], &qsum[j], r.bytes.data() + t0 * r.stride, r.stride, n_rows - t0, part.data());
      for (int t = t0; t < n_rows; ++t) ASSERT_EQ(part[t - t0], all[j * n_rows + t]) << "j " << j << " from " << t0;
    }
  }
}

TEST(KvQuantLut, OptionTurnsTablesOnAndOff) {
  const auto on = akvq::kv::resolve_kv_options("akvq2", {}, 4, 64, nullptr);
  EXPECT_EQ(on.resolved.at("lut"), "1");
  EXPECT_TRUE(on.k_low.lut);
  EXPECT_FALSE(on.v_low.lut) << "V rows are accumulated, not scored";
  const auto off = akvq::kv::resolve_kv_options("akvq2", {{"lut", "0"}}, 4, 64, nullptr);
  EXPECT_FALSE(off.k_low.lut);
  EXPECT_FALSE(RowCodec(off.k_low, 64).lut_scores());
  EXPECT_FALSE(RowCodec(on.k_tsa, 64).lut_scores()) << "4-bit text rows keep exact products";
  QuantSpec grouped = lut_spec(Levels::Uniform, 64);
  grouped.group = 32;
  EXPECT_FALSE(RowCodec(grouped, 64).lut_scores()) << "rows of two groups keep exact products";
  try {
    akvq::kv::resolve_kv_options("akvq2", {{"lut", "maybe"}}, 4, 64, nullptr);
    FAIL() << "lut=maybe accepted";
  } catch (const akvq::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'lut'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(akvq::kv::resolve_kv_options("kivi2", {{"lut", "1"}}, 4, 64, nullptr), akvq::InvalidArgument);
}

}  // namespace
