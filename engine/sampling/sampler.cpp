// Token sampler (see akvq/sampler.h for the pipeline).
#include "akvq/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "akvq/error.h"

namespace akvq {

namespace {

[[noreturn]] void bad(const std::string& what) {
  throw InvalidArgument("[sampler] " + what);
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Descending value, ties -> lower id first. A strict weak order for non-NaN values. A function
// object, so that the sorts inline it (a function pointer costs a call per comparison: top-k over
// a 49k vocabulary spent most of its time in those calls).
struct Before {
  bool operator()(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) const {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  }
};
constexpr Before before{};

// 53 random bits -> u in [0, 1); specified bit for bit (unlike std::uniform_real_distribution).
double unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

void SamplingParams::validate() const {
  if (!(temperature >= 0.0f) || std::isinf(temperature))
    bad("temperature must be finite and >= 0 (0 means greedy), got " + num(temperature));
  // llama.cpp's readings: top_k 0 or -1 disables it; top_p 0 keeps only the most likely token
  if (top_k < -1) bad("top_k must be >= -1 (0 or -1 disables it), got " + std::to_string(top_k));
  if (!(top_p >= 0.0f && top_p <= 1.0f))
    bad("top_p must be in [0, 1] (1 disables it, 0 keeps only the most likely token), got " + num(top_p));
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("min_p must be in [0, 1] (0 disables it), got " + num(min_p));
  if (!(repeat_penalty > 0.0f) || std::isinf(repeat_penalty))
    bad("repeat_penalty must be finite and > 0 (1 disables it), got " + num(repeat_penalty));
  if (repeat_last_n < -1)
    bad("repeat_last_n must be >= -1 (-1: whole history, 0: none), got " + std::to_string(repeat_last_n));
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {
  p_.validate();
}

void Sampler::reseed(uint64_t seed) {
  p_.seed = seed;
  rng_.seed(seed);
}

void Sampler::load(const float* logits, int32_t n_vocab, const std::vector<int32_t>& history) {
  if (logits == nullptr) bad("logits is null");
  if (n_vocab <= 0) bad("n_vocab must be > 0, got " + std::to_string(n_vocab));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  vals_.resize(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) vals_[i] = std::isnan(logits[i]) ? neg_inf : logits[i];

  if (p_.repeat_penalty == 1.0f || p_.repeat_last_n == 0 || history.empty()) return;
  const size_t window =
      p_.repeat_last_n < 0 ? history.size() : std::min(history.size(), static_cast<size_t>(p_.repeat_last_n));
  recent_.clear();
  for (size_t i = history.size() - window; i < history.size(); ++i)
    if (history[i] >= 0 && history[i] < n_vocab) recent_.push_back(history[i]);
  std::sort(recent_.begin(), recent_.end());
  recent_.erase(std::unique(recent_.begin(), recent_.end()), recent_.end());
  for (int32_t id : recent_) {
    float& l = vals_[id];
    l = l > 0.0f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
  }
}

int32_t Sampler::argmax() const {
  size_t best = 0;  // strict '>' over ids in increasing order: ties -> lowest id
  for (size_t i = 1; i < vals_.size(); ++i)
    if (vals_[i] > vals_[best]) best = i;
  if (vals_[best] == -std::numeric_limits<float>::infinity())
    throw InvalidArgument("[sampler] every logit is NaN or -inf");
  return static_cast<int32_t>(best);
}

void Sampler::select_top_k(size_t k) {
  // A heap of the k best so far under `before` (its front is the worst of them) over one pass of
  // the logits. A later id can only enter with a larger value than the front's (an equal value
  // comes after it: ties -> lower id first), so 16 values at a time are compared with the front's
  // value and only a chunk holding a larger one goes through the heap. The k kept are the unique
  // top-k of the strict order `before`, sorted: what partial_sort over all n gives, without
  // building and sorting n pairs (a draw over 49k logits with top_k 40: 41.7 -> 15.9 us).
  const size_t n = vals_.size();
  cand_.resize(k);
  for (size_t i = 0; i < k; ++i) cand_[i] = {vals_[i], static_cast<int32_t>(i)};
  std::make_heap(cand_.begin(), cand_.end(), before);
  constexpr size_t kChunk = 16;
  size_t i = k;
  const auto offer = [&](size_t j) {
    const std::pair<float, int32_t> c{vals_[j], static_cast<int32_t>(j)};
    if (!before(c, cand_.front())) return;
    std::pop_heap(cand_.begin(), cand_.end(), before);
    cand_.back() = c;
    std::push_heap(cand_.begin(), cand_.end(), before);
  };
  for (; i + kChunk <= n; i += kChunk) {
    const float worst = cand_.front().first;
    bool any = false;
    for (size_t j = 0; j < kChunk; ++j) any |= vals_[i + j] > worst;
    if (!any) continue;
    for (size_t j = i; j < i + kChunk; ++j) offer(j);
  }
  for (; i < n; ++i) offer(i);
  std::sort(cand_.begin(), cand_.end(), before);
}

size_t Sampler::truncate(double* weight_sum) {
  // 3. top-k by one pass over the logits (select_top_k): the full vocabulary is never sorted.
  bool sorted = false;
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < vals_.size()) {
    select_top_k(static_cast<size_t>(p_.top_k));
    sorted = true;
  } else {
    cand_.resize(vals_.size());
    for (size_t i = 0; i < vals_.size(); ++i) cand_[i] = {vals_[i], static_cast<int32_t>(i)};
  }
  auto first = cand_.begin();
  size_t m = cand_.size();
  float l_max = sorted ? cand_[0].first : -std::numeric_limits<float>::infinity();
  if (!sorted)
    for (size_t i = 0; i < m; ++i) l_max = std::max(l_max, cand_[i].first);
  if (l_max == -std::numeric_limits<float>::infinity()) throw InvalidArgument("[sampler] every logit is NaN or -inf");

  // 4. softmax at temperature 1: weight = exp(l - l_max) in (0, 1], the max has weight 1 (also
  //    when l_max is +inf). z normalises the top-k set. The cuts below use these probabilities and
  //    the temperature applies to what they keep (step 7), in llama.cpp's order (its default
  //    sampler chain and llama-cpp-python's: penalties, top-k, top-p, min-p, temperature, draw;
  //    transformers and vLLM divide by the temperature before their cuts). Without a cut the
  //    weights are made at the temperature here (scale), and step 7 has nothing to redo.
  const float inv_t = 1.0f / p_.temperature;
  const float scale = p_.top_p < 1.0f || p_.min_p > 0.0f ? 1.0f : inv_t;
  double z = 0.0;
  for (size_t i = 0; i < m; ++i) {
    const float l = cand_[i].first;
    const float w = l == l_max ? 1.0f : std::exp((l - l_max) * scale);
    cand_[i].first = w;
    z += w;
  }

  // 6. min-p (done first: it and top-p both keep a prefix of the descending order, so the result is
  //    the shorter prefix; this order shrinks the set top-p may have to sort). p/p_max = weight.
  //    -inf logits (masked, NaN) are dropped here too: no temperature gives them weight. A weight
  //    that underflows at temperature 1 stays (a high temperature can give it weight, as in
  //    llama.cpp). Order-preserving compaction keeps draws reproducible.
  const float w_min = p_.min_p;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const auto keep_it = [&](const std::pair<float, int32_t>& c) {
    return vals_[static_cast<size_t>(c.second)] != neg_inf && c.first >= w_min;
  };
  if (sorted) {
    while (m > 1 && !keep_it(cand_[m - 1])) --m;
  } else {
    size_t kept = 0;
    for (size_t i = 0; i < m; ++i)
      if (keep_it(cand_[i])) cand_[kept++] = cand_[i];
    m = kept;  // >= 1: the max has weight 1
  }

  // 5. top-p over probabilities w / z: smallest prefix with cumulative >= top_p. Without top-k the
  //    prefix is found chunk by chunk: nth_element brings the next-largest chunk forward (O(n)), and
  //    only a chunk that reaches the target is sorted. The strict order `before` makes the kept
  //    prefix and its order canonical whatever the standard library's selection algorithm does.
  if (p_.top_p < 1.0f) {
    const double target = static_cast<double>(p_.top_p) * z;
    size_t done = 0;  // cand_[0, done) is sorted, holds the largest weights, and sums to `cum`
    double cum = 0.0;
    size_t keep = m;
    for (size_t chunk = 64;; chunk *= 4) {
      const size_t c = sorted ? m : std::min(done + chunk, m);
      if (!sorted && c < m) std::nth_element(first + done, first + c, first + m, before);
      double s = 0.0;
      for (size_t i = done; i < c; ++i) s += cand_[i].first;
      if (cum + s < target && c < m) {  // the whole chunk is kept; go on with the next one
        cum += s;
        done = c;
        continue;
      }
      if (!sorted) std::sort(first + done, first + c, before);
      size_t i = done;
      for (; i < c; ++i) {
        cum += cand_[i].first;
        if (cum >= target) break;
      }
      if (i < c) {
        keep = i + 1;
        break;
      }
      done = c;
      if (c == m) break;  // rounding: the whole set is kept
    }
    m = keep;
  }

  // 7. temperature over the kept tokens: weight = exp((l - l_max) / T), from the (penalised) logits
  //    (already so when step 4 made them at the temperature)
  double sum = 0.0;
  for (size_t i = 0; i < m; ++i) {
    if (scale != inv_t) {
      const float l = vals_[static_cast<size_t>(cand_[i].second)];
      cand_[i].first = l == l_max ? 1.0f : std::exp((l - l_max) * inv_t);
    }
    sum += cand_[i].first;
  }
  *weight_sum = sum;
  return m;
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab, const std::vector<int32_t>& history) {
  load(logits, n_vocab, history);
  if (p_.temperature <= 0.0f) return argmax();
  double sum = 0.0;
  const size_t m = truncate(&sum);
  const double u = unit(rng_) * sum;
  double cum = 0.0;
  for (size_t i = 0; i < m; ++i) {
    cum += cand_[i].first;
    if (u < cum) return cand_[i].second;
  }
  return cand_[m - 1].second;  // u within rounding of the total
}

std::vector<std::pair<int32_t, float>> Sampler::distribution(const float* logits, int32_t n_vocab,
                                                             const std::vector<int32_t>& history) {
  load(logits, n_vocab, history);
  if (p_.temperature <= 0.0f) return {{argmax(), 1.0f}};
  double sum = 0.0;
  const size_t m = truncate(&sum);
  std::sort(cand_.begin(), cand_.begin() + m, before);
  std::vector<std::pair<int32_t, float>> out(m);
  for (size_t i = 0; i < m; ++i) out[i] = {cand_[i].second, static_cast<float>(cand_[i].first / sum)};
  return out;
}

}  // namespace akvq
