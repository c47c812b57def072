// Sampler: greedy, top-k/top-p/min-p cuts, temperature, repetition penalty, seeded draws,
// parameter validation. Expected distributions are recomputed here independently in double
// precision with a full sort (the sampler uses partial sorts and float weights).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "akvq/sampler.h"

using akvq::Sampler;
using akvq::SamplingParams;

namespace {

std::vector<float> random_logits(int n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

SamplingParams params(float t, int k, float top_p, float min_p, uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = t;
  p.top_k = k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  return p;
}

// Reference, llama.cpp's order: penalty -> top-k -> softmax(l) -> top-p -> min-p -> softmax(l / T)
// over the kept ids; map id -> prob.
std::map<int32_t, double> expected(const std::vector<float>& logits, const SamplingParams& p,
                                   const std::vector<int32_t>& history = {}) {
  std::vector<double> l(logits.begin(), logits.end());
  if (p.repeat_penalty != 1.0f) {
    const size_t n = p.repeat_last_n < 0 ? history.size() : std::min<size_t>(history.size(), p.repeat_last_n);
    std::vector<bool> seen(l.size(), false);
    for (size_t i = history.size() - n; i < history.size(); ++i) {
      const int32_t id = history[i];
      if (id < 0 || id >= static_cast<int32_t>(l.size()) || seen[id]) continue;
      seen[id] = true;
      l[id] = l[id] > 0 ? l[id] / p.repeat_penalty : l[id] * p.repeat_penalty;
    }
  }
  std::vector<int32_t> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < order.size()) order.resize(p.top_k);
  std::vector<double> pr(order.size());
  double z = 0;
  for (size_t i = 0; i < order.size(); ++i) z += pr[i] = std::exp(l[order[i]] - l[order[0]]);
  for (double& x : pr) x /= z;
  size_t keep = order.size();
  if (p.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += pr[i];
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  size_t keep_min = 0;
  while (keep_min < order.size() && pr[keep_min] >= p.min_p * pr[0]) ++keep_min;
  keep = std::min(keep, keep_min);
  std::map<int32_t, double> out;
  double s = 0;
  for (size_t i = 0; i < keep; ++i) s += pr[i] = std::exp((l[order[i]] - l[order[0]]) / p.temperature);
  for (size_t i = 0; i < keep; ++i) out[order[i]] = pr[i] / s;
  return out;
}

void expect_distribution_matches(const std::vector<float>& logits, const SamplingParams& p,
                                 const std::vector<int32_t>& history = {}) {
  Sampler s(p);
  const auto got = s.distribution(logits.data(), static_cast<int32_t>(logits.size()), history);
  const auto want = expected(logits, p, history);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(want.count(got[i].first)) << "unexpected id " << got[i].first;
    EXPECT_NEAR(got[i].second, want.at(got[i].first), 2e-6) << "id " << got[i].first;
    if (i) {
      EXPECT_GE(got[i - 1].second, got[i].second);
    }
  }
}

// log of probabilities [0.5, 0.3, 0.1, 0.06, 0.04] (softmax at T=1 gives them back).
const std::vector<float> kFive = {std::log(0.5f), std::log(0.3f), std::log(0.1f), std::log(0.06f), std::log(0.04f)};

std::vector<int32_t> kept_ids(Sampler& s, const std::vector<float>& l) {
  std::vector<int32_t> ids;
  for (const auto& [id, prob] : s.distribution(l.data(), static_cast<int32_t>(l.size()), {})) ids.push_back(id);
  return ids;
}

}  // namespace

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  Sampler s(params(0.0f, 40, 0.95f, 0.0f));
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f};
  EXPECT_EQ(s.sample(l.data(), 5, {}), 1);
  l[1] = NAN;  // NaN counts as -inf
  EXPECT_EQ(s.sample(l.data(), 5, {}), 3);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const auto r = random_logits(49152, seed);
    const auto want = std::max_element(r.begin(), r.end()) - r.begin();
    EXPECT_EQ(s.sample(r.data(), 49152, {}), want);
  }
  const auto d = s.distribution(l.data(), 5, {});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].first, 3);
  EXPECT_EQ(d[0].second, 1.0f);
}

TEST(Sampler, TopK1EqualsGreedy) {
  Sampler greedy(params(0.0f, 0, 1.0f, 0.0f));
  Sampler k1(params(1.5f, 1, 0.5f, 0.0f, 7));
  for (uint32_t seed = 0; seed < 50; ++seed) {
    auto r = random_logits(1000, seed);
    r[seed % 7 + 500] = r[seed % 7] = 100.0f;  // a tie at the top: lowest id wins in both
    EXPECT_EQ(k1.sample(r.data(), 1000, {}), greedy.sample(r.data(), 1000, {}));
    EXPECT_EQ(greedy.sample(r.data(), 1000, {}), static_cast<int32_t>(seed % 7));
  }
}

TEST(Sampler, TopPCutsWhereExpected) {
  // probabilities 0.5 0.3 0.1 0.06 0.04: cumulative 0.5 0.8 0.9 0.96 1.0
  auto cut = [](float top_p) {
    Sampler s(params(1.0f, 0, top_p, 0.0f));
    return kept_ids(s, kFive);
  };
  EXPECT_EQ(cut(0.3f), (std::vector<int32_t>{0}));
  EXPECT_EQ(cut(0.6f), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(cut(0.85f), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(cut(0.95f), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(cut(0.99f), (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(cut(1.0f), (std::vector<int32_t>{0, 1, 2, 3, 4}));
  Sampler s(params(1.0f, 0, 0.85f, 0.0f));
  const auto d = s.distribution(kFive.data(), 5, {});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_NEAR(d[0].second, 0.5 / 0.9, 1e-6);
  EXPECT_NEAR(d[1].second, 0.3 / 0.9, 1e-6);
  EXPECT_NEAR(d[2].second, 0.1 / 0.9, 1e-6);
}

TEST(Sampler, MinPCutsWhereExpected) {
  // p / p_max = 1, 0.6, 0.2, 0.12, 0.08
  auto cut = [](float min_p, float top_p = 1.0f) {
    Sampler s(params(1.0f, 0, top_p, min_p));
    return kept_ids(s, kFive);
  };
  EXPECT_EQ(cut(0.1f), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(cut(0.15f), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(cut(0.5f), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(cut(0.7f), (std::vector<int32_t>{0}));
  EXPECT_EQ(cut(1.0f), (std::vector<int32_t>{0}));
  // with top-p too, the shorter of the two prefixes
  EXPECT_EQ(cut(0.1f, 0.6f), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(cut(0.5f, 0.95f), (std::vector<int32_t>{0, 1}));
}

TEST(Sampler, TemperatureAndTopKMatchReference) {
  const auto r = random_logits(300, 3);
  expect_distribution_matches(r, params(1.0f, 0, 1.0f, 0.0f));
  expect_distribution_matches(r, params(0.5f, 20, 1.0f, 0.0f));
  expect_distribution_matches(r, params(2.0f, 50, 0.9f, 0.0f));
  expect_distribution_matches(r, params(0.8f, 40, 0.95f, 0.05f));
  // full-size vocabulary without top-k: exercises the growing partial sorts of top-p
  const auto big = random_logits(49152, 4, 2.0f);
  expect_distribution_matches(big, params(0.7f, 0, 0.9f, 0.0f));
  expect_distribution_matches(big, params(1.0f, 0, 0.5f, 0.0f));
  expect_distribution_matches(big, params(1.0f, 0, 1.0f, 0.02f));
  expect_distribution_matches(big, params(1.3f, 0, 0.99f, 0.001f));
}

// Top-k in one pass over the logits: the kept set and its order are the reference's (stable sort,
// ties -> lower id) for values drawn from a few levels (many ties, at the k-th place too), NaNs
// (-inf), a repetition penalty, vocabularies that are not a multiple of the 16-value chunks and k
// around the chunk size and near n. A wrong tie rule or a value skipped by the chunk test changes
// the kept ids.
TEST(Sampler, TopKKeepsTheReferenceSetWithTies) {
  std::mt19937 g(5);
  for (int n : {17, 40, 1000, 49157}) {
    for (int k : {1, 2, 15, 16, 17, 40, n - 1}) {
      if (k <= 0 || k >= n) continue;
      std::vector<float> l(n);
      for (float& x : l) x = static_cast<float>(static_cast<int>(g() % 9)) * 0.5f;  // 9 levels
      for (int i = 0; i < n; i += 13) l[i] = NAN;
      std::vector<float> ref_l = l;
      for (float& x : ref_l) x = std::isnan(x) ? -std::numeric_limits<float>::infinity() : x;
      std::vector<int32_t> history;
      for (int i = 0; i < 30; ++i) history.push_back(static_cast<int32_t>(g() % n));
      SamplingParams p = params(1.0f, k, 1.0f, 0.0f);
      p.repeat_penalty = 1.3f;
      Sampler s(p);
      std::vector<int32_t> got;
      for (const auto& [id, prob] : s.distribution(l.data(), n, history)) got.push_back(id);
      std::vector<int32_t> want;
      std::vector<std::pair<int32_t, double>> w;
      for (const auto& [id, prob] : expected(ref_l, p, history)) {
        if (prob > 0.0) w.push_back({id, prob});  // the sampler drops zero weights (-inf logits)
      }
      // the reference's map is by id: order it by its probabilities, ties -> lower id
      std::stable_sort(w.begin(), w.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      for (const auto& [id, prob] : w) want.push_back(id);
      ASSERT_EQ(got, want) << "n " << n << " k " << k;
    }
  }
}

// Upper 1e-6 tail quantile of chi-square with df degrees of freedom (Wilson-Hilferty approximation,
// z = 4.753 is the 1 - 1e-6 normal quantile): ~ 58 for df 20, ~ 98 for df 50.
double chi2_bound(size_t df) {
  const double d = static_cast<double>(df), a = 2.0 / (9.0 * d);
  return d * std::pow(1.0 - a + 4.753 * std::sqrt(a), 3.0);
}

TEST(Sampler, EmpiricalDistributionMatchesExpected) {
  // 100000 seeded draws; Pearson chi-square against the expected truncated distribution must stay
  // under its 1e-6 tail quantile. The draws are deterministic for the seed, so this is not flaky.
  const auto r = random_logits(200, 11, 1.5f);
  for (const SamplingParams& p : {params(0.7f, 10, 0.95f, 0.0f, 42), params(1.0f, 0, 0.8f, 0.05f, 43),
                                  params(1.5f, 12, 1.0f, 0.0f, 44), params(1.0f, 0, 1.0f, 0.0f, 45)}) {
    const auto want = expected(r, p);
    ASSERT_GE(want.size(), 3u);
    Sampler s(p);
    const int n = 100000;
    std::vector<int> count(200, 0);
    for (int i = 0; i < n; ++i) ++count[s.sample(r.data(), 200, {})];
    double chi2 = 0;
    for (int32_t id = 0; id < 200; ++id) {
      ASSERT_TRUE(count[id] == 0 || want.count(id)) << "drew id " << id << " outside the support";
    }
    for (const auto& [id, prob] : want) {
      const double e = prob * n;
      const double o = count[id];
      chi2 += (o - e) * (o - e) / e;
    }
    const size_t df = want.size() - 1;
    EXPECT_LT(chi2, chi2_bound(df)) << "df " << df << ", T " << p.temperature << ", k " << p.top_k;
    std::printf("  chi2 %.1f (df %zu, bound %.1f)\n", chi2, df, chi2_bound(df));
  }
}

TEST(Sampler, RepetitionPenalty) {
  SamplingParams p = params(0.0f, 0, 1.0f, 0.0f);
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 64;
  Sampler s(p);
  // penalised: a positive logit is divided (2 -> 1), a negative one multiplied (-1 -> -2)
  const std::vector<float> l = {2.0f, -1.0f, 1.5f, 0.5f};
  EXPECT_EQ(s.sample(l.data(), 4, {}), 0);
  EXPECT_EQ(s.sample(l.data(), 4, {0, 1, 0}), 2);       // 1, -2, 1.5, 0.5
  EXPECT_EQ(s.sample(l.data(), 4, {0, 2}), 0);          // 1, -1, 0.75, 0.5
  EXPECT_EQ(s.sample(l.data(), 4, {0, 0, 0, 0}), 2);    // once per distinct id, not per occurrence
  EXPECT_EQ(s.sample(l.data(), 4, {-1, 0, 99999}), 2);  // out-of-range ids are ignored
  // only the last repeat_last_n tokens count
  p.repeat_last_n = 2;
  Sampler w(p);
  EXPECT_EQ(w.sample(l.data(), 4, {0, 3, 3}), 0);
  EXPECT_EQ(w.sample(l.data(), 4, {3, 0, 3}), 2);
  p.repeat_last_n = 0;  // disabled
  EXPECT_EQ(Sampler(p).sample(l.data(), 4, {0, 1, 0}), 0);
  p.repeat_last_n = -1;  // whole history
  std::vector<int32_t> long_history(500, 3);
  long_history[0] = 0;
  EXPECT_EQ(Sampler(p).sample(l.data(), 4, long_history), 2);  // 1, -1, 1.5, 0.25
  p.repeat_last_n = 64;
  EXPECT_EQ(Sampler(p).sample(l.data(), 4, long_history), 0);  // id 0 is out of the window
  // the penalty applies before top-k/softmax when sampling as well
  p.temperature = 0.9f;
  p.top_k = 30;
  p.top_p = 0.9f;
  p.repeat_penalty = 1.3f;
  const auto r = random_logits(100, 5);
  std::vector<int32_t> hist;
  for (int i = 0; i < 80; ++i) hist.push_back((i * 37) % 100);
  expect_distribution_matches(r, p, hist);
}

TEST(Sampler, DeterministicPerSeed) {
  const auto r = random_logits(5000, 8, 1.0f);
  auto draws = [&](Sampler& s) {
    std::vector<int32_t> v;
    for (int i = 0; i < 200; ++i) v.push_back(s.sample(r.data(), 5000, v));
    return v;
  };
  SamplingParams p = params(1.0f, 0, 0.95f, 0.0f, 123);
  p.repeat_penalty = 1.1f;
  Sampler a(p), b(p);
  const auto t0 = std::chrono::steady_clock::now();
  const auto va = draws(a);
  std::printf("  200 draws (n_vocab 5000, top_p 0.95, no top-k): %.2f ms\n",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_EQ(va, draws(b));
  a.reseed(123);
  EXPECT_EQ(va, draws(a));
  EXPECT_EQ(a.params().seed, 123u);
  a.reseed(124);
  EXPECT_NE(va, draws(a));
  std::map<int32_t, int> distinct;
  for (int32_t t : va) ++distinct[t];
  EXPECT_GT(distinct.size(), 20u);  // it does sample, not collapse onto one id
}

TEST(Sampler, DrawFollowsSpecifiedRngUse) {
  // u = (first mt19937_64 output >> 11) / 2^53, scanned over the kept set in descending order.
  const SamplingParams p = params(1.0f, 5, 1.0f, 0.0f, 2024);
  for (uint64_t seed = 0; seed < 64; ++seed) {
    Sampler s(p);
    s.reseed(seed);
    std::mt19937_64 g(seed);
    const double u = static_cast<double>(g() >> 11) * 0x1.0p-53;
    const int want = u < 0.5 ? 0 : u < 0.8 ? 1 : u < 0.9 ? 2 : u < 0.96 ? 3 : 4;
    EXPECT_EQ(s.sample(kFive.data(), 5, {}), want) << "seed " << seed << " u " << u;
  }
}

TEST(Sampler, ValidationNamesTheField) {
  auto fails = [](SamplingParams p, const std::string& field) {
    try {
      p.validate();
      ADD_FAILURE() << "no error for " << field;
    } catch (const akvq::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
    EXPECT_THROW(Sampler{p}, akvq::InvalidArgument) << field;
  };
  SamplingParams ok;
  EXPECT_NO_THROW(ok.validate());
  SamplingParams p;
  p.temperature = -0.1f;
  fails(p, "temperature");
  p.temperature = NAN;
  fails(p, "temperature");
  p.temperature = INFINITY;
  fails(p, "temperature");
  p = ok;
  p.top_p = -0.01f;
  fails(p, "top_p");
  p.top_p = 1.5f;
  fails(p, "top_p");
  p.top_p = NAN;
  fails(p, "top_p");
  p = ok;
  p.min_p = -0.01f;
  fails(p, "min_p");
  p.min_p = 1.01f;
  fails(p, "min_p");
  p.min_p = NAN;
  fails(p, "min_p");
  p = ok;
  p.top_k = -2;
  fails(p, "top_k");
  p = ok;
  p.repeat_penalty = 0.0f;
  fails(p, "repeat_penalty");
  p.repeat_penalty = -1.0f;
  fails(p, "repeat_penalty");
  p.repeat_penalty = NAN;
  fails(p, "repeat_penalty");
  p = ok;
  p.repeat_last_n = -2;
  fails(p, "repeat_last_n");
  // edge values that are valid
  p = ok;
  p.temperature = 0.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.repeat_last_n = -1;
  EXPECT_NO_THROW(p.validate());
  p.top_k = -1;  // llama.cpp's readings: top-k off, only the most likely token
  p.top_p = 0.0f;
  EXPECT_NO_THROW(p.validate());
}

TEST(Sampler, BadInputThrows) {
  Sampler s(params(1.0f, 0, 1.0f, 0.0f));
  const std::vector<float> l = {1.0f, 2.0f};
  EXPECT_THROW(s.sample(nullptr, 2, {}), akvq::InvalidArgument);
  EXPECT_THROW(s.sample(l.data(), 0, {}), akvq::InvalidArgument);
  const std::vector<float> nan(4, NAN);
  EXPECT_THROW(s.sample(nan.data(), 4, {}), akvq::InvalidArgument);
  Sampler g(params(0.0f, 0, 1.0f, 0.0f));
  EXPECT_THROW(g.sample(nan.data(), 4, {}), akvq::InvalidArgument);
  // -inf logits are masked tokens, never drawn
  std::vector<float> masked = {-INFINITY, 0.0f, -INFINITY, 0.0f};
  for (int i = 0; i < 100; ++i) {
    const int32_t t = s.sample(masked.data(), 4, {});
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
  // a +inf logit takes all the mass
  masked[2] = INFINITY;
  EXPECT_EQ(s.sample(masked.data(), 4, {}), 2);
}
