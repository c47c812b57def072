// f16 KV cache: attention against a naive f32 reference written here (softmax(q·kᵀ·scale)·v with
// a causal mask and GQA), split-K on long contexts, and the error paths.
//
// Tolerances: `ref16` uses K/V rounded to fp16 like the cache, so only summation order and the
// online softmax differ: |Δ| <= 2e-5 (outputs are O(1)). `ref32` uses the original f32 K/V: the
// fp16 storage error (relative 2^-11 per element) gives |Δ| <= 4e-3.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "core/fp16.h"
#include "kv/attend_rows_avx512.h"
#include "kv/attend_tile.h"
#include "kv/kv_cache.h"
#include "kv/kv_f16.h"
#include "cpu/thread_pool.h"

using namespace akvq;

namespace {

struct Data {
  int n_head_kv, head_dim;
  std::vector<float> k, v;  // [n_tok, n_head_kv, head_dim]
};

std::vector<float> randu(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<float> x(n);
  for (float& f : x) f = lo + (hi - lo) * static_cast<float>(g() >> 8) / 16777216.0f;
  return x;
}

std::vector<float> round16(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = fp16_to_f32(f32_to_fp16(x[i]));
  return y;
}

// Naive reference: q [n_q, n_head, head_dim] attends over the first n_kv tokens of k, v; query i
// sees tokens [0, n_kv - n_q + i]. Double accumulation.
std::vector<float> reference(const std::vector<float>& k, const std::vector<float>& v, int n_kv,
                             int n_head_kv, int head_dim, const std::vector<float>& q, int n_q,
                             int n_head, float scale) {
  std::vector<float> out(static_cast<size_t>(n_q) * n_head * head_dim);
  const int group = n_head / n_head_kv;
  for (int i = 0; i < n_q; ++i) {
    for (int h = 0; h < n_head; ++h) {
      const int kvh = h / group;
      const int vis = n_kv - n_q + i + 1;
      std::vector<double> s(vis);
      double mx = -1e300;
      for (int t = 0; t < vis; ++t) {
        double d = 0;
        for (int c = 0; c < head_dim; ++c) {
          d += double(q[(size_t(i) * n_head + h) * head_dim + c]) *
               k[(size_t(t) * n_head_kv + kvh) * head_dim + c];
        }
        s[t] = d * scale;
        mx = std::max(mx, s[t]);
      }
      double sum = 0;
      for (double& e : s) sum += (e = std::exp(e - mx));
      for (int c = 0; c < head_dim; ++c) {
        double acc = 0;
        for (int t = 0; t < vis; ++t) acc += s[t] * v[(size_t(t) * n_head_kv + kvh) * head_dim + c];
        out[(size_t(i) * n_head + h) * head_dim + c] = static_cast<float>(acc / sum);
      }
    }
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

kv::KvConfig config(int n_layer, int n_head_kv, int head_dim, int n_ctx) {
  kv::KvConfig c;
  c.n_layer = n_layer;
  c.n_head_kv = n_head_kv;
  c.head_dim = head_dim;
  c.n_ctx = n_ctx;
  return c;
}

struct Case {
  int n_head_kv, n_head, head_dim, n_prefix, n_q, threads;
  float q_amp;  // query amplitude: large values make the softmax peaky (online-softmax rescaling)
};

void run_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE("n_head_kv=" + std::to_string(c.n_head_kv) + " n_head=" + std::to_string(c.n_head) +
               " head_dim=" + std::to_string(c.head_dim) + " n_prefix=" + std::to_string(c.n_prefix) +
               " n_q=" + std::to_string(c.n_q) + " threads=" + std::to_string(c.threads));
  const int n_kv = c.n_prefix + c.n_q;
  const int64_t row = int64_t(c.n_head_kv) * c.head_dim;
  const auto k = randu(n_kv * row, -1, 1, seed), v = randu(n_kv * row, -1, 1, seed + 1);
  const auto q = randu(size_t(c.n_q) * c.n_head * c.head_dim, -c.q_amp, c.q_amp, seed + 2);
  auto cache = kv::KvCache::create(config(2, c.n_head_kv, c.head_dim, n_kv + 5));
  // layer 1 receives the data (layer 0 something else) to check layers are independent
  const auto junk = randu(n_kv * row, -3, 3, seed + 3);
  cache->append(0, junk.data(), junk.data(), n_kv);
  // append in uneven pieces: prefix in chunks of 37, then the n_q query tokens at once
  for (int t = 0; t < c.n_prefix; t += 37) {
    const int m = std::min(37, c.n_prefix - t);
    cache->append(1, k.data() + t * row, v.data() + t * row, m);
  }
  cache->append(1, k.data() + c.n_prefix * row, v.data() + c.n_prefix * row, c.n_q);
  ASSERT_EQ(cache->n_tokens(1), n_kv);

  cpu::ThreadPool pool(c.threads);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  std::vector<float> out(q.size(), -7.0f);
  cache->attend(1, q.data(), c.n_q, c.n_head, scale, out.data(), pool);

  const auto r16 = reference(round16(k), round16(v), n_kv, c.n_head_kv, c.head_dim, q, c.n_q,
                             c.n_head, scale);
  const auto r32 = reference(k, v, n_kv, c.n_head_kv, c.head_dim, q, c.n_q, c.n_head, scale);
  EXPECT_LE(max_abs_diff(out, r16), 2e-5);
  EXPECT_LE(max_abs_diff(out, r32), 4e-3);
}

}  // namespace

TEST(KvF16, AttendMatchesReferenceShort) {
  // GQA 3:1 and 1:1, single and multiple queries, prefill from empty
  run_case({2, 6, 64, 0, 1, 1, 1.0f}, 1);
  run_case({2, 6, 64, 0, 9, 2, 1.0f}, 2);
  run_case({2, 6, 64, 10, 1, 2, 1.0f}, 3);
  run_case({2, 6, 64, 10, 3, 2, 1.0f}, 4);
  run_case({4, 4, 32, 5, 17, 2, 1.0f}, 5);
  run_case({1, 8, 128, 3, 70, 2, 1.0f}, 6);  // more queries than one score block
}

TEST(KvF16, AttendMatchesReferenceLongSplitK) {
  // long contexts: several split-K ranges of kPartTokens positions, merged
  run_case({3, 9, 64, 1000, 1, 2, 1.0f}, 10);
  run_case({1, 1, 128, 2047, 1, 2, 1.0f}, 11);   // many splits, last one partial
  run_case({1, 2, 64, 300, 2, 3, 1.0f}, 12);     // n_q = 2: second query sees one more token
  run_case({2, 4, 64, 700, 1, 1, 1.0f}, 13);     // one thread: no split
  run_case({2, 2, 64, kv::F16KvCache::kPartTokens - 1, 1, 2, 1.0f}, 14);  // the first range just full
  run_case({2, 2, 64, kv::F16KvCache::kPartTokens, 2, 2, 1.0f}, 16);      // queries on both sides
  run_case({3, 9, 64, 600, 64, 2, 1.0f}, 15);    // chunked prefill over a long prefix
}

TEST(KvF16, AttendPeakySoftmax) {
  // large scores: the running max changes often and exp() must not overflow
  run_case({2, 6, 64, 200, 4, 2, 12.0f}, 20);
  run_case({1, 2, 64, 900, 1, 2, 12.0f}, 21);
}

TEST(KvF16, LazyAllocationAndStats) {
  auto cache = kv::KvCache::create(config(3, 2, 64, 4096));
  kv::KvStats s = cache->stats();
  EXPECT_EQ(s.n_tokens, 0);
  EXPECT_EQ(s.bytes, 0);
  EXPECT_EQ(s.bytes_reserved, 0);  // nothing allocated before use
  EXPECT_EQ(s.bits_per_element, 16.0);
  const auto x = randu(10 * 128, -1, 1, 5);
  for (int l = 0; l < 3; ++l) cache->append(l, x.data(), x.data(), 10);
  s = cache->stats();
  EXPECT_EQ(s.n_tokens, 10);
  EXPECT_EQ(s.bytes, 3 * 10 * 128 * 2 * 2);  // layers * tokens * row * (K,V) * 2 bytes
  EXPECT_GE(s.bytes_reserved, s.bytes);
  EXPECT_LT(s.bytes_reserved, 3 * 4096 * 128 * 2 * 2 / 4);  // far from the full context
}

TEST(KvF16, TruncateAndClear) {
  auto cache = kv::KvCache::create(config(2, 1, 32, 64));
  const auto k = randu(20 * 32, -1, 1, 7), v = randu(20 * 32, -1, 1, 8);
  for (int l = 0; l < 2; ++l) cache->append(l, k.data(), v.data(), 20);
  cache->truncate(12);
  EXPECT_EQ(cache->n_tokens(0), 12);
  EXPECT_EQ(cache->n_tokens(1), 12);
  EXPECT_THROW(cache->truncate(13), InvalidArgument);
  EXPECT_THROW(cache->truncate(-1), InvalidArgument);
  // re-appending after truncation overwrites: attention equals a fresh cache with the same data
  const auto k2 = randu(5 * 32, -1, 1, 9), v2 = randu(5 * 32, -1, 1, 10);
  cache->append(0, k2.data(), v2.data(), 5);
  auto fresh = kv::KvCache::create(config(2, 1, 32, 64));
  fresh->append(0, k.data(), v.data(), 12);
  fresh->append(0, k2.data(), v2.data(), 5);
  cpu::ThreadPool pool(2);
  const auto q = randu(3 * 2 * 32, -1, 1, 11);
  std::vector<float> a(q.size()), b(q.size());
  cache->attend(0, q.data(), 3, 2, 0.2f, a.data(), pool);
  fresh->attend(0, q.data(), 3, 2, 0.2f, b.data(), pool);
  EXPECT_EQ(a, b);
  cache->clear();
  EXPECT_EQ(cache->n_tokens(0), 0);
  EXPECT_EQ(cache->n_tokens(1), 0);
  EXPECT_EQ(cache->stats().bytes, 0);
}

TEST(KvF16, ContextOverflowThrowsAndKeepsState) {
  auto cache = kv::KvCache::create(config(1, 1, 32, 16));
  const auto x = randu(17 * 32, -1, 1, 3);
  cache->append(0, x.data(), x.data(), 10);
  try {
    cache->append(0, x.data(), x.data(), 7);
    FAIL() << "no exception";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("n_ctx = 16"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache->n_tokens(0), 10);
  cache->append(0, x.data(), x.data(), 6);  // exactly full is fine
  EXPECT_EQ(cache->n_tokens(0), 16);
  EXPECT_THROW(cache->append(0, x.data(), x.data(), 1), InvalidArgument);
}

TEST(KvF16, BadConfigAndArguments) {
  kv::KvConfig c = config(1, 2, 64, 128);
  c.mode = "q2_akvq";
  try {
    kv::KvCache::create(c);
    FAIL() << "no exception";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("kv mode 'q2_akvq' is not supported (supported: f16,"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(kv::KvCache::create(config(0, 2, 64, 128)), InvalidArgument);
  EXPECT_THROW(kv::KvCache::create(config(1, 0, 64, 128)), InvalidArgument);
  EXPECT_THROW(kv::KvCache::create(config(1, 2, 0, 128)), InvalidArgument);
  EXPECT_THROW(kv::KvCache::create(config(1, 2, 64, 0)), InvalidArgument);
  auto cache = kv::KvCache::create(config(1, 2, 64, 128));
  const auto x = randu(4 * 128, -1, 1, 3);
  EXPECT_THROW(cache->append(1, x.data(), x.data(), 1), InvalidArgument);  // layer out of range
  cache->append(0, x.data(), x.data(), 2);
  cpu::ThreadPool pool(1);
  std::vector<float> out(3 * 3 * 64);
  EXPECT_THROW(cache->attend(0, x.data(), 3, 2, 1.0f, out.data(), pool), InvalidArgument);  // n_q > n_kv
  EXPECT_THROW(cache->attend(0, x.data(), 1, 3, 1.0f, out.data(), pool), InvalidArgument);  // 3 % 2
}

TEST(KvTile, F16ToF32AllHalfs) {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
  std::vector<float> y(65536);
  kv::tile::f16_to_f32(h.data(), y.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float ref = fp16_to_f32(static_cast<uint16_t>(i));
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(y[i])) << i;
    } else {
      EXPECT_EQ(y[i], ref) << i;  // bit-exact incl. signed zero, subnormals, inf
      EXPECT_EQ(std::signbit(y[i]), std::signbit(ref)) << i;
    }
  }
}

TEST(KvTile, ExpNonPositive) {
  // relative error vs std::exp below 3e-7 on [-87, 0]
  std::vector<float> x;
  for (float v = -87.0f; v <= 0.0f; v += 0.001953125f) x.push_back(v);
  x.push_back(0.0f);
  x.push_back(-1e-8f);
  std::vector<float> y = x;
  kv::tile::exp_nonpos(y.data(), static_cast<int>(y.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(double(x[i]));
    worst = std::max(worst, std::fabs(y[i] - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);
  float big[3] = {-100.0f, -std::numeric_limits<float>::infinity(), -1e30f};
  kv::tile::exp_nonpos(big, 3);
  for (float f : big) EXPECT_LT(f, 2e-38f);
}

TEST(KvTile, ExpVisibleSumIsTheMaskedExpAndItsSum) {
  // one pass = the separate steps bit for bit: x - m where visible (> -inf) else 0, exp_nonpos,
  // 0 where masked, sum8; for masks at every lane position, infinities, subnormals, signed zeros;
  // and each weight within 3e-7 of exp(x - m) in double
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 30.0f);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 8 * (1 + static_cast<int>(rng() % 8));
    std::vector<float> x(n), t(n);
    float m = trial % 7 == 0 ? 0.0f : -1e30f;
    for (int j = 0; j < n; ++j) {
      const int k = static_cast<int>(rng() % 9);
      x[j] = k == 0 ? ninf : k == 1 ? -0.0f : k == 2 ? 1e-40f : nd(rng);
      if (x[j] > ninf) m = std::max(m, x[j]);
    }
    for (int j = 0; j < n; ++j) t[j] = x[j] > ninf ? x[j] - m : 0.0f;
    kv::tile::exp_nonpos(t.data(), n);
    for (int j = 0; j < n; ++j) t[j] = x[j] > ninf ? t[j] : 0.0f;
    const float want_sum = kv::tile::sum8(t.data(), n);
    std::vector<float> y = x;
    const float got_sum = kv::tile::exp_visible_sum(y.data(), n, m);
    for (int j = 0; j < n; ++j) {
      uint32_t a, b;
      std::memcpy(&a, &y[j], 4);
      std::memcpy(&b, &t[j], 4);
      ASSERT_EQ(a, b) << "lane " << j << " trial " << trial;
      if (x[j] > ninf && x[j] - m > -80.0f) {
        const double ref = std::exp(double(x[j] - m));  // of the float difference the kernel takes
        ASSERT_LT(std::fabs(y[j] - ref) / ref, 3e-7) << "lane " << j << " trial " << trial;
      }
    }
    uint32_t a, b;
    std::memcpy(&a, &got_sum, 4);
    std::memcpy(&b, &want_sum, 4);
    ASSERT_EQ(a, b) << "sum, trial " << trial;
  }
}

TEST(KvTile, Sum8AndMax8FollowTheLaneOrder) {
  // 8 lane partials in element order, then ((0+1)+(2+3))+((4+5)+(6+7)); the max a scalar select;
  // bit for bit for every length (the quantized cache's softmax stops at the block's last 8)
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int n = 8; n <= 512; n += 8) {
    std::vector<float> x(n);
    for (auto& v : x) v = rng() % 5 == 0 ? ninf : std::exp(nd(rng)) - 1.0f;
    float p[8] = {}, q[8];
    for (int l = 0; l < 8; ++l) q[l] = x[l];
    for (int j = 0; j < n; j += 8) {
      for (int l = 0; l < 8; ++l) {
        const float v = x[j + l] == ninf ? 0.0f : x[j + l];
        p[l] += v;
        q[l] = q[l] > x[j + l] ? q[l] : x[j + l];
      }
    }
    float mx = q[0];
    for (int l = 1; l < 8; ++l) mx = mx > q[l] ? mx : q[l];
    std::vector<float> y(n);
    for (int j = 0; j < n; ++j) y[j] = x[j] == ninf ? 0.0f : x[j];
    const float want_sum = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    const float got_sum = kv::tile::sum8(y.data(), n), got_max = kv::tile::max8(x.data(), n);
    ASSERT_EQ(0, std::memcmp(&got_sum, &want_sum, 4)) << "sum, n " << n;
    ASSERT_EQ(0, std::memcmp(&got_max, &mx, 4)) << "max, n " << n;
  }
}

// Batch invariance over several split-K ranges: feeding a 1100-token stream one token at a time
// (decode) or in chunks of 512 / 97 on other thread counts gives every query the same output bit
// for bit (inputs of a position depend on the position alone).
static void check_attention_batch_invariance(int nkv, int n_head, int hd) {
  const int n_total = 1100;  // two ranges
  auto run = [&](int chunk, int threads) {
    kv::KvConfig cfg;
    cfg.mode = "f16";
    cfg.n_layer = 1, cfg.n_head_kv = nkv, cfg.head_dim = hd, cfg.n_ctx = 4096;
    auto cache = kv::KvCache::create(cfg);
    cpu::ThreadPool pool(threads);
    std::vector<float> all(static_cast<size_t>(n_total) * n_head * hd);
    for (int p0 = 0; p0 < n_total; p0 += chunk) {
      const int n = std::min(chunk, n_total - p0);
      std::vector<float> k, v, q;
      for (int i = 0; i < n; ++i) {
        std::mt19937 g(static_cast<uint32_t>(p0 + i));
        std::normal_distribution<float> d;
        for (int e = 0; e < nkv * hd; ++e) k.push_back(d(g)), v.push_back(d(g));
        for (int e = 0; e < n_head * hd; ++e) q.push_back(2.0f * d(g));
      }
      cache->append(0, k.data(), v.data(), n);
      cache->attend(0, q.data(), n, n_head, 0.125f, all.data() + static_cast<size_t>(p0) * n_head * hd, pool);
    }
    return all;
  };
  const auto ref = run(1, 2);
  for (const auto& [chunk, threads] : std::vector<std::pair<int, int>>{{512, 2}, {97, 3}, {1, 1}}) {
    const auto got = run(chunk, threads);
    EXPECT_EQ(0, std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)))
        << "chunk " << chunk << " threads " << threads;
  }
}

// Shapes: GQA groups of 3 (decode reads both KV heads in one item, in place), MHA with a head_dim
// of 40 (a tail of 8 past the 16-wide steps), one KV head of 128 in a group of 8; groups of 5 and 7
// with head_dims 40 and 72 (decode's shared-row kernels in calls of 4 + 1 and 4 + 3 rows, with
// tails past their 16-wide and 32-wide steps).
TEST(KvF16, AttentionIsBatchInvariant) {
  for (const auto& [nkv, n_head, hd] : std::vector<std::tuple<int, int, int>>{
           {2, 6, 64}, {4, 4, 40}, {1, 8, 128}, {1, 5, 40}, {2, 14, 72}}) {
    SCOPED_TRACE("n_head_kv " + std::to_string(nkv) + " n_head " + std::to_string(n_head) + " hd " + std::to_string(hd));
    check_attention_batch_invariance(nkv, n_head, hd);
  }
}

// The AVX-512 GQA row kernels give the portable kernels' bits: scores and values of 1..9 heads
// (calls of 4 + ...) over fp16 rows at scattered addresses, head_dims with and without an 8-value
// tail past the 16-wide steps (and past the values' 64-wide passes), values of wide range; n = 1, 5,
// 13, 64 fp16 rows: below the scores' 8-row steps, one step and a tail, whole steps.
TEST(KvTile, Avx512RowKernelsGiveThePortableBits) {
  if (!kv::tile512::active()) GTEST_SKIP() << "the CPU (or AKVQ_ISA) does not run the AVX-512 kernels";
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (int hd : {8, 16, 24, 40, 64, 72, 128, 136}) {
    for (int rows : {1, 2, 3, 4, 5, 7, 9}) {
      for (int n : {1, 5, 13, 64}) {
        std::vector<uint16_t> store(static_cast<size_t>(n) * 3 * hd);
        for (auto& h : store) h = f32_to_fp16(nd(rng) * std::exp(2.0f * nd(rng)));
        std::vector<const uint16_t*> row(n);
        for (int j = 0; j < n; ++j) row[j] = store.data() + static_cast<size_t>((j * 7) % n) * 3 * hd + (j % 3) * hd;
        std::vector<float> q(static_cast<size_t>(rows) * hd), p(static_cast<size_t>(rows) * 64);
        for (auto& x : q) x = nd(rng);
        for (auto& x : p) x = std::exp(-std::abs(4.0f * nd(rng)));
        std::vector<float> s_ref(static_cast<size_t>(rows) * 64, -1.0f), s_got = s_ref;
        kv::tile::scores_rows_h(rows, q.data(), hd, [&](int j) { return row[j]; }, n, hd, s_ref.data(), 64);
        kv::tile512::scores_rows_h(rows, q.data(), hd, row.data(), n, hd, s_got.data(), 64);
        std::vector<float> a_ref(static_cast<size_t>(rows) * hd);
        for (auto& x : a_ref) x = nd(rng);
        std::vector<float> a_got = a_ref;
        kv::tile::pv_rows_h(rows, p.data(), 64, n, [&](int j) { return row[j]; }, hd, a_ref.data(), hd);
        kv::tile512::pv_rows_h(rows, p.data(), 64, n, row.data(), hd, a_got.data(), hd);
        const std::string at = "hd " + std::to_string(hd) + " rows " + std::to_string(rows) + " n " + std::to_string(n);
        ASSERT_EQ(0, std::memcmp(s_got.data(), s_ref.data(), s_ref.size() * 4)) << "scores, " << at;
        ASSERT_EQ(0, std::memcmp(a_got.data(), a_ref.data(), a_ref.size() * 4)) << "values, " << at;
      }
    }
  }
}

// The work split of attention: a divisor of the group; the whole group whenever there are enough
// items for the threads (one thread, prefill, deep split-K); the whole group for 4 kv heads in
// groups of 8 on 2 threads (2 rounds of 9 < 16 rounds of 2); single heads only where the group
// alone would leave threads idle (1 kv head in a group of 8 on 4 threads: 1 round of 3 < 1 of 9).
TEST(KvTile, HeadsPerItemShortensTheStep) {
  for (int group : {1, 2, 3, 4, 6, 8}) {
    for (int units : {1, 3, 4, 17}) {
      for (int nth : {1, 2, 4}) {
        const int h = kv::tile::heads_per_item(group, units, nth);
        EXPECT_EQ(group % h, 0) << group << " " << units << " " << nth;
        if (nth == 1 || units % nth == 0) {
          EXPECT_EQ(h, group) << group << " " << units << " " << nth;
        }
      }
    }
  }
  EXPECT_EQ(kv::tile::heads_per_item(8, 4, 2), 8);
  EXPECT_EQ(kv::tile::heads_per_item(3, 3, 2), 3);  // 2 rounds of 4 < 5 rounds of 2
  EXPECT_EQ(kv::tile::heads_per_item(8, 1, 4), 2);  // 1 round of 3
  EXPECT_EQ(kv::tile::heads_per_item(8, 1, 2), 4);  // 1 round of 5
}

// KV heads per decode item: a divisor of n_head_kv within the L2 width, and never a longer step
// than one head per item. A batched decode's sequence on one thread takes all of SmolLM2's 3 heads
// of 64; one sequence on 2 threads keeps one head per item (3 heads: 2 rounds of 1 beat 1 round of
// 3); 7B's 32 heads of 128 go 4 at a time (512 halves), a 1.1B's 4 heads of 64 in pairs on 2 threads.
TEST(KvTile, KvHeadsPerItemKeepsTheStep) {
  for (int nkv : {1, 2, 3, 4, 8, 32}) {
    for (int hd : {64, 128}) {
      for (int units : {1, 2, 3, 4}) {
        for (int nth : {1, 2, 4}) {
          const int c = kv::tile::kv_heads_per_item(nkv, hd, units, nth);
          EXPECT_EQ(nkv % c, 0);
          EXPECT_LE(c * hd, std::max(hd, kv::tile::kItemWidth));
          const int64_t base = (int64_t{nkv} * units + nth - 1) / nth;
          EXPECT_LE((int64_t{nkv / c} * units + nth - 1) / nth * c, base) << nkv << " " << hd << " " << units << " " << nth;
        }
      }
    }
  }
  EXPECT_EQ(kv::tile::kv_heads_per_item(3, 64, 1, 1), 3);
  EXPECT_EQ(kv::tile::kv_heads_per_item(3, 64, 1, 2), 1);
  EXPECT_EQ(kv::tile::kv_heads_per_item(32, 128, 1, 1), 4);
  EXPECT_EQ(kv::tile::kv_heads_per_item(4, 64, 1, 2), 2);
  EXPECT_EQ(kv::tile::kv_heads_per_item(3, 64, 4, 2), 3);  // 4 split-K ranges: 2 rounds of 3
}
