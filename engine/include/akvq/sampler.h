// Token sampler: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded RNG.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace akvq {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy
  int32_t top_k = 40;         // <= 0: disabled
  float top_p = 0.95f;        // >= 1: disabled
  float min_p = 0.0f;         // <= 0: disabled
  float repeat_penalty = 1.0f;  // 1: disabled; llama.cpp semantics (divide positive, multiply negative logits)
  int32_t repeat_last_n = 64;   // how many recent tokens the penalty looks at
  uint64_t seed = 0;
  void validate() const;  // throws InvalidArgument naming the bad field
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  void reseed(uint64_t seed);
  // logits[n_vocab] (not modified). history: tokens so far (prompt + generated) for the penalty.
  int32_t sample(const float* logits, int32_t n_vocab, const std::vector<int32_t>& history);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // scratch
};

}  // namespace akvq
