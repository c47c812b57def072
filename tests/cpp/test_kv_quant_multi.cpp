// RowCodec::scores_multi / accumulate_multi (several queries against the same packed rows, as the
// heads of a GQA group or the positions of a chunk read them) against the same products computed
// in double on the dequantized rows, for every bit width, levels, group size, 1..4 queries and
// row counts around the kernels' row passes; strides with padding; nothing written outside. And the
// production quantizer (SIMD pack) against the scalar reference, byte for byte.
#include <akvq/error.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kv/quant.h"
#include "kv_attention_check.h"

namespace {

using akvq::kv::kMaxQueries;
using akvq::kv::Levels;
using akvq::kv::QuantSpec;
using akvq::kv::RowCodec;

TEST(KvQuantMulti, ManyQueriesEqualAttentionOnDequantizedRows) {
  std::mt19937 rng(11);
  int n_cases = 0;
  for (int n : {64, 128}) {
    for (int bits : {2, 3, 4, 8}) {
      for (int group : {16, 32, 64, 128}) {
        if (n % group != 0) continue;
        for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
          if (lv == Levels::Gaussian && bits == 8) continue;
          for (int nq = 1; nq <= kMaxQueries; ++nq) {
            for (int n_rows : {1, 2, 3, 5, 64}) {
              for (bool pv_bf16 : {false, true}) {  // 2/4-bit rows: the products from bf16 pairs too (AVX-512)
                if (pv_bf16 && bits != 2 && bits != 4) continue;
                akvq::test::check_attention_multi(n, bits, group, lv, nq, n_rows, rng, pv_bf16);
                ++n_cases;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(n_cases, 400);
}

TEST(KvQuantMulti, TooManyQueriesIsAnError) {
  QuantSpec s;
  const RowCodec codec(s, 64);
  std::vector<float> q(64 * 5), qsum(5), out(5);
  std::vector<uint8_t> rows(codec.row_bytes());
  EXPECT_THROW(codec.scores_multi(q.data(), 64, qsum.data(), 1, kMaxQueries + 1, rows.data(), codec.row_bytes(), 1,
                                  out.data(), 1),
               akvq::InvalidArgument);
  EXPECT_THROW(codec.accumulate_multi(out.data(), 1, kMaxQueries + 1, rows.data(), codec.row_bytes(), 1, q.data(), 64),
               akvq::InvalidArgument);
}

}  // namespace

namespace {

// The production quantizer (RowCodec::quantize_rows, SIMD when built with it) writes exactly the
// bytes of the scalar reference: every bit width, levels, group size; rows with constant groups,
// ties at half steps, NaN, ±inf and huge values; padded strides.
TEST(KvQuantPack, QuantizeRowsIsBitIdenticalToTheReference) {
  std::mt19937 rng(23);
  std::normal_distribution<float> nd;
  int n_cases = 0;
  for (int n : {64, 128}) {
    for (int bits : {2, 3, 4, 8}) {
      for (int group : {8, 16, 32, 64, 128}) {
        if (n % group != 0) continue;
        for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
          if (lv == Levels::Gaussian && bits == 8) continue;
          for (float clip : {1.0f, 0.6f, 0.9f}) {
            QuantSpec s;
            s.bits = bits, s.group = group, s.clip = clip, s.levels = lv;
            const RowCodec codec(s, n);
            const int n_rows = 9;
            const int64_t xst = n + 3;
            std::vector<float> x(static_cast<size_t>(xst) * n_rows);
            for (auto& v : x) v = 0.2f + 2.0f * nd(rng);
            for (int i = 0; i < n; ++i) x[0 * xst + i] = 1.25f;                             // constant row
            for (int i = 0; i < n; ++i) x[1 * xst + i] = static_cast<float>(i % 4) * 0.5f;  // ties
            x[2 * xst + 5] = std::nanf("");
            x[3 * xst + 1] = std::numeric_limits<float>::infinity();
            x[4 * xst + 2] = -std::numeric_limits<float>::infinity();
            x[5 * xst + 7] = 3e38f;
            for (int i = 0; i < n; ++i) x[6 * xst + i] = 1e-30f * static_cast<float>(i);  // tiny range
            const size_t ost = codec.row_bytes() + 2;
            std::vector<uint8_t> got(ost * n_rows, 0x5A), want(ost * n_rows, 0x5A);
            codec.quantize_rows(x.data(), xst, n_rows, got.data(), ost);
            for (int r = 0; r < n_rows; ++r) {
              akvq::kv::ref::quantize_row(s, codec.group(), codec.levels(), &x[r * xst], n, &want[r * ost]);
            }
            ASSERT_EQ(got, want) << "n " << n << " bits " << bits << " group " << group << " "
                                 << akvq::kv::levels_name(lv) << " clip " << clip;
            ++n_cases;
          }
        }
      }
    }
  }
  EXPECT_GT(n_cases, 100);
}

}  // namespace

// Batch invariance of the kernels: a query's scores and accumulator are bit for bit the same
// whether it runs alone or with other queries (nq 1..4), and whatever the number of rows in the
// call when the extra rows carry weight 0 (a decode step sees a partial block, a prefill chunk the
// same block with later rows masked).
TEST(KvQuantMulti, EachQueryIsBitIdenticalWhateverTheBatch) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (int bits : {2, 3, 4, 8}) {
    for (Levels lv : {Levels::Uniform, Levels::Gaussian}) {
      if (bits == 8 && lv == Levels::Gaussian) continue;
      for (auto [n, group, pv_bf16] : {std::tuple{32, 32, false}, std::tuple{64, 32, false}, std::tuple{64, 64, false},
                                       std::tuple{128, 128, false}, std::tuple{64, 32, true}, std::tuple{64, 64, true},
                                       std::tuple{128, 128, true}}) {
        if (pv_bf16 && bits != 2 && bits != 4) continue;  // the products from bf16 pairs too (AVX-512)
        QuantSpec s;
        s.bits = bits, s.group = group, s.levels = lv, s.clip = bits == 2 ? 0.9f : 1.0f;
        s.pv_bf16 = pv_bf16;
        const RowCodec codec(s, n);
        const int n_rows = 64;
        const size_t rb = codec.row_bytes();
        std::vector<float> x(static_cast<size_t>(n_rows) * n);
        for (auto& v : x) v = nd(rng);
        std::vector<uint8_t> rows(rb * n_rows);
        codec.quantize_rows(x.data(), n, n_rows, rows.data(), rb);
        std::vector<float> q(kMaxQueries * n), p(kMaxQueries * n_rows), qs(kMaxQueries * codec.n_groups());
        for (auto& v : q) v = nd(rng);
        for (auto& v : p) v = std::fabs(nd(rng));
        for (int j = 0; j < kMaxQueries; ++j)
          codec.query_group_sums(q.data() + j * n, qs.data() + j * codec.n_groups());
        for (int visible : {1, 3, 5, 17, 64}) {
          SCOPED_TRACE("bits " + std::to_string(bits) + " group " + std::to_string(group) + " visible " +
                       std::to_string(visible) + (codec.pv_bf16() ? " bf16 pairs" : ""));
          // alone, on exactly the visible rows
          std::vector<float> s1(kMaxQueries * n_rows), a1(kMaxQueries * n, 0.0f);
          for (int j = 0; j < kMaxQueries; ++j) {
            codec.scores_multi(q.data() + j * n, n, qs.data() + j * codec.n_groups(), codec.n_groups(), 1, rows.data(),
                               rb, visible, s1.data() + j * n_rows, n_rows);
            codec.accumulate_multi(p.data() + j * n_rows, n_rows, 1, rows.data(), rb, visible, a1.data() + j * n, n);
          }
          for (int nq = 2; nq <= kMaxQueries; ++nq) {
            // together, on the whole block with the rows past `visible` weighted 0
            std::vector<float> sm(kMaxQueries * n_rows), am(kMaxQueries * n, 0.0f), pm = p;
            for (int j = 0; j < nq; ++j)
              std::fill(pm.begin() + j * n_rows + visible, pm.begin() + (j + 1) * n_rows, 0.0f);
            codec.scores_multi(q.data(), n, qs.data(), codec.n_groups(), nq, rows.data(), rb, n_rows, sm.data(),
                               n_rows);
            codec.accumulate_multi(pm.data(), n_rows, nq, rows.data(), rb, n_rows, am.data(), n);
            // requests of other spans while accumulating (RowsAhead) change no bit
            std::vector<float> aa(kMaxQueries * n, 0.0f);
            akvq::kv::RowsAhead ahead;
            ahead.p[0] = rows.data() + 3, ahead.n[0] = rows.size() - 3;
            ahead.p[1] = reinterpret_cast<const uint8_t*>(q.data()), ahead.n[1] = q.size() * sizeof(float);
            codec.accumulate_multi(pm.data(), n_rows, nq, rows.data(), rb, n_rows, aa.data(), n, &ahead);
            EXPECT_EQ(0, std::memcmp(aa.data(), am.data(), aa.size() * sizeof(float))) << "accumulate with requests";
            for (int j = 0; j < nq; ++j) {
              EXPECT_EQ(0, std::memcmp(sm.data() + j * n_rows, s1.data() + j * n_rows, visible * sizeof(float)))
                  << "scores, query " << j << " of " << nq;
              EXPECT_EQ(0, std::memcmp(am.data() + j * n, a1.data() + j * n, n * sizeof(float)))
                  << "accumulate, query " << j << " of " << nq;
            }
          }
        }
      }
    }
  }
}
