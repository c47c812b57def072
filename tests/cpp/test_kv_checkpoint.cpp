// Checkpoints of the quantized caches (KvCache::checkpoint, kv option `checkpoint`): after a
// cache streamed past its checkpoint c (tokens evicted from the window, pivots displaced, kivi2
// blocks flushed), truncate(c) must give exactly the cache that streaming tokens [0, c) into a
// fresh cache gives: the same bytes, and bit for bit the same attention for every token appended
// afterwards. restorable() offers c and nothing it cannot restore.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "test_random.h"

using namespace akvq;

namespace {

using test::randn;

constexpr int kHd = 32, kHeads = 6, kEmbd = 32;

struct Case {
  std::string mode;
  std::map<std::string, std::string> opts;
};

std::unique_ptr<kv::KvCache> make_cache(const Case& cs) {
  kv::KvConfig cfg;
  cfg.mode = cs.mode;
  cfg.n_layer = 2;
  cfg.n_head_kv = 2;
  cfg.head_dim = kHd;
  cfg.n_ctx = 1024;
  cfg.options = cs.opts;
  return kv::KvCache::create(cfg);
}

// Appends positions [p0, p1) in chunks of `chunk`, the data of a position a function of the
// position alone (so any chunking streams the same tokens); returns the attention outputs
// [p1 - p0, 2 layers, kHeads * kHd].
std::vector<float> stream(kv::KvCache& cache, int p0, int p1, int chunk, cpu::ThreadPool& pool) {
  const size_t per = static_cast<size_t>(kHeads) * kHd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHd));
  std::vector<float> all(static_cast<size_t>(p1 - p0) * 2 * per);
  for (int a = p0; a < p1; a += chunk) {
    const int n = std::min(chunk, p1 - a);
    std::vector<TokenKind> kinds(n);
    for (int i = 0; i < n; ++i) kinds[i] = static_cast<TokenKind>(((a + i) / 11) % 3);
    cache.set_kinds(kinds.data(), n);
    for (int l = 0; l < 2; ++l) {
      std::vector<float> x, k, v, q;
      for (int i = 0; i < n; ++i) {
        const uint32_t sd = static_cast<uint32_t>((a + i) * 8 + l * 4);
        auto xi = randn(kEmbd, sd);
        // massive activations of varied size: pivots, displaced by larger ones in any order
        if ((a + i) % 9 == 3) xi[5] = 300.0f + static_cast<float>((a + i) * 37 % 101);
        if ((a + i) % 7 == 5) xi[7] = 200.0f + static_cast<float>((a + i) * 53 % 211);
        auto ki = randn(2 * kHd, sd + 1), vi = randn(2 * kHd, sd + 2), qi = randn(per, sd + 3, 1.5f);
        x.insert(x.end(), xi.begin(), xi.end());
        k.insert(k.end(), ki.begin(), ki.end());
        v.insert(v.end(), vi.begin(), vi.end());
        q.insert(q.end(), qi.begin(), qi.end());
      }
      cache.observe(l, x.data(), n, kEmbd);
      cache.append(l, k.data(), v.data(), n);
      std::vector<float> out(q.size());
      cache.attend(l, q.data(), n, kHeads, scale, out.data(), pool);
      for (int i = 0; i < n; ++i) {
        std::copy(out.begin() + i * per, out.begin() + (i + 1) * per, all.begin() + ((a - p0 + i) * 2 + l) * per);
      }
    }
  }
  return all;
}

std::vector<Case> cases() {
  const std::map<std::string, std::string> small{{"window", "8"}, {"pivots", "3"}, {"tsa_layers", "0"}};
  return {{"akvq2", small},
          {"akvq2", {}},  // the defaults (window 96, 15 pivots)
          {"akvq4", small},
          {"q2", {{"window", "8"}}},
          {"kivi2", {{"window", "8"}}}};
}

}  // namespace

TEST(KvCheckpoint, TruncateToTheCheckpointIsAFreshCache) {
  cpu::ThreadPool pool(2);
  for (const Case& cs : cases()) {
    for (int c : {5, 70, 150}) {
      SCOPED_TRACE(cs.mode + (cs.opts.empty() ? " defaults" : " small") + " c=" + std::to_string(c));
      const int L = c + 140;  // far enough for every fp16 token at c to leave fp16 (window <= 96)
      auto a = make_cache(cs);
      stream(*a, 0, c, 5, pool);
      a->checkpoint();
      stream(*a, c, L, 3, pool);
      EXPECT_EQ(a->restorable(L - 1), c);
      EXPECT_EQ(a->restorable(c), c);
      if (c > 1) EXPECT_EQ(a->restorable(c - 1), 0) << "nothing else is restorable once tokens left the window";
      a->truncate(c);
      EXPECT_EQ(a->n_tokens(), c);
      const int64_t bytes_c = a->stats().bytes;

      auto b = make_cache(cs);  // the state a fresh stream of [0, c) gives, in other chunks
      stream(*b, 0, c, 7, pool);
      EXPECT_EQ(a->stats().bytes, b->stats().bytes);
      const auto ya = stream(*a, c, c + 120, 4, pool);
      const auto yb = stream(*b, c, c + 120, 4, pool);
      ASSERT_EQ(0, std::memcmp(ya.data(), yb.data(), ya.size() * sizeof(float))) << "attention after the restore";

      a->truncate(c);  // the checkpoint stays until its tokens are dropped
      EXPECT_EQ(a->stats().bytes, bytes_c);
      EXPECT_EQ(a->restorable(c), c);
      if (c > 1) {
        a->truncate(c - 1);
        stream(*a, c - 1, c + 100, 6, pool);
        EXPECT_EQ(a->restorable(c + 99), 0) << "a truncate below the checkpoint drops it";
      }
      a->clear();
      EXPECT_EQ(a->restorable(0), 0);
    }
  }
}

// Without the option nothing is copied, restorable() is what it was, and the budget does not
// price a copy; with it, bytes_reserved holds the copy and bytes (the bits per element) does not.
TEST(KvCheckpoint, OptionOffKeepsNoCopy) {
  cpu::ThreadPool pool(1);
  Case on{"akvq2", {{"window", "8"}, {"pivots", "3"}}};
  Case off = on;
  off.opts["checkpoint"] = "0";
  auto a = make_cache(on), b = make_cache(off);
  for (auto* c : {a.get(), b.get()}) {
    stream(*c, 0, 30, 5, pool);
    c->checkpoint();
    stream(*c, 30, 80, 5, pool);
  }
  EXPECT_EQ(a->restorable(79), 30);
  EXPECT_EQ(b->restorable(79), 0);
  EXPECT_EQ(a->stats().bytes, b->stats().bytes);
  EXPECT_GT(a->stats().bytes_reserved, a->stats().bytes);
  EXPECT_EQ(b->stats().bytes_reserved, b->stats().bytes);
  EXPECT_GT(a->bytes_bound(1024), b->bytes_bound(1024));
  EXPECT_GE(a->bytes_bound(80), a->stats().bytes_reserved);
  EXPECT_EQ(a->summary().options.at("checkpoint"), "1");
  EXPECT_EQ(b->summary().options.at("checkpoint"), "0");
  // modes without a window or pivots restore any length; the option is off there
  auto q = make_cache({"q2", {}});
  EXPECT_EQ(q->summary().options.at("checkpoint"), "0");
  EXPECT_THROW(make_cache({"f16", {{"checkpoint", "1"}}}), std::exception);
}
