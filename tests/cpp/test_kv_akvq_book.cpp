// Quantized KV caches: precision bookkeeping (classes per layer, TSA vs PSA), pivots from
// synthetic massive activations, option validation, truncate, and bits per element by hand.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "kv/kv_options.h"
#include "kv/kv_quant_cache.h"

using namespace akvq;

namespace {

kv::KvConfig config(const std::string& mode, int n_layer, int n_head_kv, int hd,
                    std::map<std::string, std::string> opts) {
  kv::KvConfig c;
  c.mode = mode;
  c.n_layer = n_layer;
  c.n_head_kv = n_head_kv;
  c.head_dim = hd;
  c.n_ctx = 512;
  c.options = std::move(opts);
  return c;
}

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& f : x) f = d(g);
  return x;
}

// Appends the given kinds in chunks (all layers), with massive[pos] = amplitude put in the
// layer input at that position.
void feed(kv::KvCache& c, const std::vector<TokenKind>& kinds, int chunk, const std::map<int, float>& massive) {
  const auto& cfg = c.config();
  const int E = 48;
  uint32_t seed = 11;
  for (int p0 = c.n_tokens(); p0 < static_cast<int>(kinds.size()); p0 += chunk) {
    const int n = std::min<int>(chunk, static_cast<int>(kinds.size()) - p0);
    c.set_kinds(kinds.data() + p0, n);
    for (int l = 0; l < cfg.n_layer; ++l) {
      auto x = randn(static_cast<size_t>(n) * E, seed++);
      for (const auto& [pos, a] : massive) {
        if (pos >= p0 && pos < p0 + n) x[(pos - p0) * E + 7] = -a;
      }
      c.observe(l, x.data(), n, E);
      const auto k = randn(static_cast<size_t>(n) * cfg.n_head_kv * cfg.head_dim, seed++);
      c.append(l, k.data(), k.data(), n);
    }
  }
}

std::map<std::string, int64_t> counts(const KvLayerStats& l) {
  std::map<std::string, int64_t> m;
  for (const auto& c : l.classes) m[c.name] = c.tokens;
  return m;
}

// 10 text, 20 vision, 5 text, 10 generated = 45 tokens.
std::vector<TokenKind> script() {
  std::vector<TokenKind> k;
  k.insert(k.end(), 10, TokenKind::Text);
  k.insert(k.end(), 20, TokenKind::Vision);
  k.insert(k.end(), 5, TokenKind::Text);
  k.insert(k.end(), 10, TokenKind::Generated);
  return k;
}

}  // namespace

TEST(KvAkvqBook, ClassesPerLayerTsaVsPsa) {
  for (int chunk : {1, 7, 45}) {
    SCOPED_TRACE(chunk);
    auto c = kv::KvCache::create(config("akvq2", 3, 2, 32, {{"window", "8"}, {"pivots", "2"}, {"tsa_layers", "0,2"}}));
    feed(*c, script(), chunk, {});
    const KvSummary s = c->summary();
    EXPECT_EQ(s.n_tokens, 45);
    EXPECT_EQ(s.tsa_layers, (std::vector<int32_t>{0, 2}));
    // evicted: positions 0..36 = text 15, vision 20, generated 2; window: 37..44
    const std::map<std::string, int64_t> tsa{{"fp16_window", 8}, {"fp16_pivot", 0}, {"q2g", 20}, {"q4", 17}};
    const std::map<std::string, int64_t> psa{{"fp16_window", 8}, {"fp16_pivot", 0}, {"q2g", 37}};
    EXPECT_EQ(counts(s.layers[0]), tsa);
    EXPECT_EQ(counts(s.layers[1]), psa);
    EXPECT_EQ(counts(s.layers[2]), tsa);
    for (const auto& l : s.layers) EXPECT_TRUE(l.pivots.empty());
  }
}

TEST(KvAkvqBook, PivotsAtMassiveActivations) {
  for (int chunk : {1, 7, 45}) {
    SCOPED_TRACE(chunk);
    auto c = kv::KvCache::create(config("akvq2", 2, 1, 32, {{"window", "8"}, {"pivots", "2"}, {"tsa_layers", "0"}}));
    // 0 (text) and 12 (vision) qualify first; 25 (vision, larger) displaces 12 (the weakest);
    // 36 (generated) is never a pivot; 40 (generated) stays in the window.
    feed(*c, script(), chunk, {{0, 1000.0f}, {12, 500.0f}, {25, 2000.0f}, {36, 5000.0f}, {40, 5000.0f}});
    const KvSummary s = c->summary();
    for (int l = 0; l < 2; ++l) EXPECT_EQ(s.layers[l].pivots, (std::vector<int32_t>{0, 25})) << l;
    // layer 0 (TSA): evicted 37 = pivots 2 + text 14 + generated 2 (q4) + vision 19 (q2)
    EXPECT_EQ(counts(s.layers[0]),
              (std::map<std::string, int64_t>{{"fp16_window", 8}, {"fp16_pivot", 2}, {"q2g", 19}, {"q4", 16}}));
    EXPECT_EQ(counts(s.layers[1]),
              (std::map<std::string, int64_t>{{"fp16_window", 8}, {"fp16_pivot", 2}, {"q2g", 35}}));
  }
  // below the factor: no pivot
  auto c = kv::KvCache::create(config("akvq2", 1, 1, 32, {{"window", "4"}, {"pivot_factor", "1000"}}));
  feed(*c, script(), 5, {{0, 1000.0f}});
  EXPECT_TRUE(c->summary().layers[0].pivots.empty());
}

TEST(KvAkvqBook, OptionErrorsNameTheOption) {
  auto bad = [](const std::string& mode, std::map<std::string, std::string> o, const std::string& needle) {
    try {
      kv::KvCache::create(config(mode, 2, 1, 64, o));
      ADD_FAILURE() << "no exception for " << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  bad("akvq2", {{"clip", "0"}}, "kv option 'clip'");
  bad("akvq2", {{"clip", "abc"}}, "kv option 'clip'");
  bad("akvq2", {{"clip_k", "nan"}}, "kv option 'clip_k'");
  bad("akvq2", {{"clip_v", "-1"}}, "kv option 'clip_v'");
  bad("akvq2", {{"bits", "5"}}, "kv option 'bits'");
  bad("akvq2", {{"k_bits", "1"}}, "kv option 'k_bits'");
  bad("akvq2", {{"v_bits", "16"}}, "kv option 'v_bits'");
  bad("akvq2", {{"tsa_bits", "x"}}, "kv option 'tsa_bits'");
  bad("akvq2", {{"group", "12"}}, "kv option 'group'");
  bad("akvq2", {{"group", "128"}}, "kv option 'group'");
  bad("akvq2", {{"window", "-1"}}, "kv option 'window'");
  bad("akvq2", {{"pivots", "1.5"}}, "kv option 'pivots'");
  bad("akvq2", {{"levels", "lloyd"}}, "kv option 'levels'");
  bad("q8", {{"levels", "gaussian"}}, "kv option 'bits'");
  bad("akvq2", {{"tsa_layers", "0,2"}}, "kv option 'tsa_layers'");
  bad("akvq2", {{"tsa_layers", "a"}}, "kv option 'tsa_layers'");
  bad("akvq2", {{"pivot_factor", "0"}}, "kv option 'pivot_factor'");
  bad("akvq2", {{"foo", "1"}}, "kv option 'foo'");
  bad("akvq2", {{"rotate", "2"}}, "kv option 'rotate'");
  bad("akvq2", {{"rotate", "yes please"}}, "kv option 'rotate'");
  bad("kivi2", {{"rotate", "1"}}, "kv option 'rotate'");
  bad("f16", {{"bits", "2"}}, "kv option 'bits'");
  bad("kivi2", {{"bits", "4"}}, "kv option 'bits'");
  bad("q3", {}, "kv mode 'q3'");
  // good ones resolve with defaults filled in
  auto c = kv::KvCache::create(config("akvq2", 2, 1, 64, {{"clip", "0.7"}, {"tsa_layers", "none"}}));
  const auto o = c->summary().options;
  EXPECT_EQ(o.at("clip_k"), "0.7");
  EXPECT_EQ(o.at("window"), std::to_string(kv::defaults::kWindow));
  EXPECT_EQ(o.at("pivots"), "15");
  EXPECT_EQ(o.at("group"), "64");
  EXPECT_EQ(o.at("tsa_layers"), "none");
  EXPECT_EQ(o.at("tsa_bits"), "4");
  const auto d = kv::KvCache::create(config("akvq2", 4, 1, 64, {}))->summary();
  EXPECT_EQ(d.tsa_layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(std::stof(d.options.at("clip")), kv::defaults::kClipGauss2);
  EXPECT_EQ(d.options.at("levels"), "auto (gaussian at 2 bits, uniform at 4)");
  kv::KvConfig f = config("akvq4", 4, 1, 64, {});
  f.has_file_tsa = true;
  f.file_tsa_layers = {3};
  const auto fs = kv::KvCache::create(f)->summary();
  EXPECT_EQ(fs.tsa_layers, (std::vector<int32_t>{3}));
  EXPECT_EQ(fs.options.at("bits"), "4");
  EXPECT_EQ(fs.options.at("clip"), "1");
}

TEST(KvAkvqBook, TruncateDropsFromEveryStore) {
  for (const std::string mode : {"akvq2", "kivi2", "q4"}) {
    SCOPED_TRACE(mode);
    std::map<std::string, std::string> o{{"window", "8"}};
    if (mode == "akvq2") o = {{"window", "8"}, {"pivots", "2"}, {"tsa_layers", "0"}};
    if (mode == "q4") o = {};
    auto c = kv::KvCache::create(config(mode, 2, 1, 32, o));
    auto kinds = script();
    kinds.insert(kinds.end(), 40, TokenKind::Text);
    feed(*c, kinds, 7, {{2, 1000.0f}, {30, 800.0f}});
    ASSERT_EQ(c->n_tokens(), 85);
    c->truncate(20);
    EXPECT_EQ(c->n_tokens(0), 20);
    EXPECT_EQ(c->n_tokens(1), 20);
    const auto s = c->summary();
    for (const auto& l : s.layers) {
      int64_t total = 0;
      for (const auto& cl : l.classes) total += cl.tokens;
      EXPECT_EQ(total, 20);
      for (int p : l.pivots) EXPECT_LT(p, 20);
    }
    EXPECT_THROW(c->truncate(21), InvalidArgument);
    // keeps working: append and attend
    feed(*c, kinds, 5, {});
    EXPECT_EQ(c->n_tokens(), 85);
    cpu::ThreadPool pool(2);
    const auto q = randn(2 * 32, 5);
    std::vector<float> out(q.size());
    const auto k = randn(32, 6);
    for (int l = 0; l < 2; ++l) {
      c->append(l, k.data(), k.data(), 1);
      c->attend(l, q.data(), 1, 2, 0.2f, out.data(), pool);
    }
    for (float v : out) EXPECT_TRUE(std::isfinite(v));
    c->clear();
    EXPECT_EQ(c->n_tokens(), 0);
    EXPECT_EQ(c->stats().bytes, 0);
  }
}

TEST(KvAkvqBook, BitsPerElementByHand) {
  // q2, head_dim 64, group 64: per K row 4 bytes (fp16 scale + offset) + 64·2/8 = 20 bytes
  auto q2 = kv::KvCache::create(config("q2", 1, 1, 64, {}));
  feed(*q2, std::vector<TokenKind>(10, TokenKind::Text), 3, {});
  EXPECT_EQ(q2->stats().bytes, 10 * 40);
  EXPECT_DOUBLE_EQ(q2->stats().bits_per_element, 2.5);
  // akvq2, window 4, 2 layers x 2 heads, group 32, layer 0 TSA (text at 4 bits):
  // window 4 tok x 2 heads x 64 x 2 (K,V) x 2 B = 2048 B/layer;
  // 2-bit row: 2 groups x 4 B + 16 B = 24 B; 4-bit row: 8 + 32 = 40 B (x2 heads x K,V)
  // layer 0: 6 text x 2 x 80 = 960; layer 1: 6 x 2 x 48 = 576.
  auto a = kv::KvCache::create(
      config("akvq2", 2, 2, 64, {{"window", "4"}, {"pivots", "0"}, {"group", "32"}, {"tsa_layers", "0"}}));
  feed(*a, std::vector<TokenKind>(10, TokenKind::Text), 4, {});
  const int64_t bytes = 2 * 2048 + 960 + 576;
  EXPECT_EQ(a->stats().bytes, bytes);
  EXPECT_DOUBLE_EQ(a->stats().bits_per_element, bytes * 8.0 / (10.0 * 2 * 2 * 64 * 2));
  const auto s = a->summary();
  EXPECT_EQ(s.bytes, bytes);
  EXPECT_EQ(s.layers[0].classes.size(), 3u);  // fp16_window, q2, q4 (no pivot class with pivots 0)
}

TEST(KvAkvqBook, LevelsAndClipDefaults) {
  const std::vector<int> tsa{0, 1};
  // akvq2: Gaussian levels at 2 bits with their clip, uniform 4-bit text classes in TSA layers
  auto o = kv::resolve_kv_options("akvq2", {}, 4, 64, &tsa);
  EXPECT_EQ(o.k_low.levels, kv::Levels::Gaussian);
  EXPECT_EQ(o.v_low.levels, kv::Levels::Gaussian);
  EXPECT_EQ(o.k_low.clip, kv::defaults::kClipGauss2);
  EXPECT_EQ(o.k_tsa.levels, kv::Levels::Uniform);
  EXPECT_EQ(o.k_tsa.clip, kv::defaults::kClip4);
  // 3-bit K in the akvq modes: Gaussian, clip 1
  o = kv::resolve_kv_options("akvq2", {{"k_bits", "3"}}, 4, 64, &tsa);
  EXPECT_EQ(o.k_low.levels, kv::Levels::Gaussian);
  EXPECT_EQ(o.k_low.clip, kv::defaults::kClip4);
  EXPECT_EQ(o.v_low.levels, kv::Levels::Gaussian);
  // explicit uniform: the uniform 2-bit clip
  o = kv::resolve_kv_options("akvq2", {{"levels", "uniform"}}, 4, 64, &tsa);
  EXPECT_EQ(o.k_low.levels, kv::Levels::Uniform);
  EXPECT_EQ(o.k_low.clip, kv::defaults::kClip2);
  EXPECT_EQ(o.resolved.at("levels"), "uniform");
  // explicit gaussian applies to the 4-bit classes too; "auto" is the default spelled out
  o = kv::resolve_kv_options("akvq2", {{"levels", "gaussian"}}, 4, 64, &tsa);
  EXPECT_EQ(o.k_tsa.levels, kv::Levels::Gaussian);
  o = kv::resolve_kv_options("akvq2", {{"levels", "auto"}}, 4, 64, &tsa);
  EXPECT_EQ(o.k_low.levels, kv::Levels::Gaussian);
  // akvq4 and the baselines keep uniform levels
  for (const char* m : {"akvq4", "q2", "wht2", "q4", "q8"}) {
    o = kv::resolve_kv_options(m, {}, 4, 64, &tsa);
    EXPECT_EQ(o.k_low.levels, kv::Levels::Uniform) << m;
    EXPECT_EQ(o.v_low.levels, kv::Levels::Uniform) << m;
  }
  EXPECT_EQ(kv::resolve_kv_options("q2", {}, 4, 64, &tsa).k_low.clip, kv::defaults::kClip2);
}

TEST(KvAkvqBook, OptionValuesIgnoreSurroundingBlanks) {
  // "window= 5" and "window=5 " alike (a value typed with a blank on either side); inner blanks and
  // other text still refused
  const std::vector<int> tsa{0, 1};
  for (const char* w : {"5", " 5", "5 ", "\t5 "}) {
    EXPECT_EQ(kv::resolve_kv_options("akvq2", {{"window", w}}, 4, 64, &tsa).window, 5) << "'" << w << "'";
  }
  EXPECT_EQ(kv::resolve_kv_options("akvq2", {{"levels", "uniform "}}, 4, 64, &tsa).k_low.levels, kv::Levels::Uniform);
  EXPECT_EQ(kv::resolve_kv_options("akvq2", {{"clip", " 0.8"}}, 4, 64, &tsa).k_low.clip, 0.8f);
  EXPECT_TRUE(kv::resolve_kv_options("akvq2", {{"lut", "off "}}, 4, 64, &tsa).k_low.lut == false);
  for (const char* w : {"5 5", "5x", " "}) {
    EXPECT_THROW(kv::resolve_kv_options("akvq2", {{"window", w}}, 4, 64, &tsa), akvq::InvalidArgument) << w;
  }
}

TEST(KvAkvqBook, DefaultAkvq2StaysWithinThreeBitsAt4096) {
  // SmolLM2's cache shape (30 layers, 3 KV heads of 64), default options (window, 15 pivots, TSA
  // layers {0, 1} at 4 bits), 4096 text tokens and enough massive activations to fill every
  // pivot slot: the worst case of the default layout stays within 3.0 bits per element.
  kv::KvConfig cfg = config("akvq2", 30, 3, 64, {});
  cfg.n_ctx = 4096;
  auto c = kv::KvCache::create(cfg);
  std::map<int, float> massive;
  for (int i = 0; i < 40; ++i) massive[100 * i + 3] = 1000.0f + i;
  feed(*c, std::vector<TokenKind>(4096, TokenKind::Text), 512, massive);
  const auto s = c->summary();
  for (const auto& l : s.layers) EXPECT_EQ(l.pivots.size(), 15u);
  EXPECT_LE(c->stats().bits_per_element, 3.0);
  EXPECT_GT(c->stats().bits_per_element, 2.9);  // the window is as wide as the budget allows
}

// rotate=0 takes the WHT out of akvq2 and nothing else: with TSA off (whose 4-bit text keeps uniform
// levels under akvq2's auto levels), akvq2 rotate=0 stores and attends exactly as q2 given akvq2's
// window, pivots, Gaussian levels and clip; with rotate=1 (its default) it differs.
TEST(KvAkvqBook, RotateOffIsAkvq2WithoutTheWht) {
  cpu::ThreadPool pool(1);
  const int n_head = 2, hd = 32, n = 70;
  auto run = [&](const std::string& mode, std::map<std::string, std::string> o) {
    auto c = kv::KvCache::create(config(mode, 2, 1, hd, std::move(o)));
    std::vector<TokenKind> kinds(n, TokenKind::Text);
    for (int i = 10; i < 40; ++i) kinds[i] = TokenKind::Vision;
    feed(*c, kinds, 7, {{3, 1000.0f}});
    const auto q = randn(static_cast<size_t>(4) * n_head * hd, 99);
    std::vector<float> out(q.size());
    c->attend(1, q.data(), 4, n_head, 0.2f, out.data(), pool);
    return std::make_pair(out, c->summary().options);
  };
  const auto [off, o_off] = run("akvq2", {{"rotate", "0"}, {"tsa_layers", "none"}, {"window", "8"}});
  const auto [q2, o_q2] = run("q2", {{"window", "8"}, {"pivots", "15"}, {"levels", "gaussian"}, {"clip", "0.9"}});
  const auto [on, o_on] = run("akvq2", {{"rotate", "true"}, {"tsa_layers", "none"}, {"window", "8"}});
  EXPECT_EQ(o_off.at("rotate"), "0");
  EXPECT_EQ(o_on.at("rotate"), "1");
  EXPECT_EQ(o_q2.at("rotate"), "0");
  EXPECT_EQ(off, q2);
  EXPECT_NE(off, on);
}
