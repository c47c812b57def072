// Token sampler: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded RNG.
//
// Pipeline of Sampler::sample (each stage sees the output of the previous one):
//   1. repetition penalty over the distinct ids among the last repeat_last_n history tokens
//      (llama.cpp semantics: a positive logit is divided by repeat_penalty, a negative one
//      multiplied; applied once per distinct id whatever its count);
//   2. temperature <= 0: greedy argmax of the penalised logits, ties -> lowest id; done.
//   3. top-k: keep the k largest logits (ties -> lower id first);
//   4. softmax of the logits (temperature 1) over what is left;
//   5. top-p: keep the smallest prefix (by descending probability) whose cumulative probability
//      is >= top_p (at least one token);
//   6. min-p: drop tokens with p < min_p * p_max (p from step 4);
//   7. softmax of logits / temperature over the kept tokens, and draw with the seeded
//      std::mt19937_64 (u = 53 high bits / 2^53, so draws are identical on every standard library
//      for a given seed).
// The cuts before the temperature: llama.cpp's order (its default sampler chain, llama-cpp-python's
// Llama); transformers and vLLM apply the temperature first, so a cut keeps other tokens there
// when the temperature is not 1.
// NaN logits count as -inf. History ids outside [0, n_vocab) are ignored by the penalty (callers
// may mark non-text positions, e.g. image embeddings, with -1).
#pragma once
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace akvq {

struct SamplingParams {
  float temperature = 0.8f;     // <= 0: greedy
  int32_t top_k = 40;           // >= -1; 0 or -1: disabled
  float top_p = 0.95f;          // [0, 1]; 1: disabled; 0: only the most likely token
  float min_p = 0.0f;           // [0, 1]; 0: disabled
  float repeat_penalty = 1.0f;  // > 0; 1: disabled; llama.cpp semantics (divide positive, multiply negative logits)
  int32_t repeat_last_n = 64;   // how many recent tokens the penalty looks at; 0: none, -1: whole history
  uint64_t seed = 0;
  void validate() const;  // throws InvalidArgument naming the bad field
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);  // validates p
  void reseed(uint64_t seed);
  const SamplingParams& params() const { return p_; }
  // logits[n_vocab] (not modified). history: tokens so far (prompt + generated) for the penalty.
  int32_t sample(const float* logits, int32_t n_vocab, const std::vector<int32_t>& history);
  // The distribution sample() draws from (steps 1-7), as (id, probability) pairs in
  // descending probability (ties -> lower id). Greedy params give one pair with probability 1.
  // Does not touch the RNG.
  std::vector<std::pair<int32_t, float>> distribution(const float* logits, int32_t n_vocab,
                                                      const std::vector<int32_t>& history);

 private:
  // Fills vals_ with the penalised logits of every id (NaN -> -inf).
  void load(const float* logits, int32_t n_vocab, const std::vector<int32_t>& history);
  // Steps 3-6 on vals_: leaves the kept candidates at the front of cand_ with their unnormalised
  // weights exp((l - l_max) / T) in .first; returns how many are kept and their weight sum.
  size_t truncate(double* weight_sum);
  // cand_ = the k best (logit, id) of vals_, ties -> lower id, in that order (0 < k < n_vocab).
  void select_top_k(size_t k);
  int32_t argmax() const;

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<float> vals_;                      // scratch: penalised logits   [n_vocab]
  std::vector<std::pair<float, int32_t>> cand_;  // scratch: (logit or weight, id)   [top_k or n_vocab]
  std::vector<int32_t> recent_;                  // scratch: distinct penalised ids
};

}  // namespace akvq
