// The generation loop of the engine, the one every frontend (akvq-cli, the Python bindings) uses:
//
//   prompt -> Session::eval_prompt (prefix reuse)
//   loop:  sample -> end-of-generation? -> token bytes -> UTF-8 assembly -> stop strings
//          -> max_tokens? -> context full? -> Session::eval({token}, Generated)
//
// A Generator yields one step per generated token with the text that token releases. Text is
// valid UTF-8 made of whole characters: a character split over several tokens is released with
// the token that completes it, invalid bytes become U+FFFD (one per maximal invalid subpart, as
// Python's decode(errors="replace") does), and text that could be the start of a stop string is
// held back until it is known not to be one. A stop string cuts the text exactly: neither it
// nor anything after it is released (with overlapping stop strings, the cut is before the
// occurrence that ends first, on a tie the longer one: the same result for any token boundaries). The last step says
// why generation ended (its finish reason) and carries everything still held back; the end-of-generation token is never
// a step.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "akvq/engine.h"
#include "akvq/sampler.h"

namespace akvq {

enum class FinishReason : uint8_t {
  None = 0,  // not finished (or a step failed)
  Stop,      // a stop string was generated (cut from the text)
  Length,    // max_tokens tokens were generated
  Eos,       // the model produced an end-of-generation token (not part of the output)
  Context,   // the context (n_ctx) is full: the last token could not be evaluated
};
// "stop" | "length" | "eos" | "context"; "" for None.
const char* finish_reason_name(FinishReason r);

// A fresh random seed (std::random_device), for "no seed given / seed -1: random" in frontends.
uint64_t random_seed();

struct GenerateParams {
  int max_tokens = 128;           // tokens to generate at most, >= 0 (0: evaluate the prompt only)
  SamplingParams sampling;        // greedy when sampling.temperature <= 0 (then the seed is unused)
  std::vector<std::string> stop;  // stop strings, UTF-8; empty strings are ignored
  // -1: none; 0..kMaxLogprobs: every step carries its token's log-probability and this many most
  // likely alternatives, from the log-softmax of the model's raw logits (before penalties,
  // temperature and truncation: the model's distribution, as the OpenAI API reports it).
  int logprobs = -1;
  static constexpr int kMaxLogprobs = 20;
  void validate() const;          // throws InvalidArgument naming the bad field
};

// Incremental text of a generation: raw token bytes in, releasable UTF-8 text out (the UTF-8
// assembly and stop-string stages of the loop, usable on their own).
class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop = {});  // "" entries are dropped
  // Appends raw bytes; returns the text that may be released now (whole characters, not a
  // possible start of a stop string, nothing at or after a stop string). After a stop string
  // was found, returns "" for anything fed.
  std::string feed(const std::string& bytes);
  // End of the text: releases what is held back (an incomplete character becomes U+FFFD, a
  // partial stop string is plain text). "" after a stop string.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::string decode(bool final);  // moves complete characters of raw_ into text_

  std::vector<std::string> stop_;
  size_t max_stop_ = 0;  // longest stop string, bytes
  std::string raw_;      // bytes not decoded yet (an incomplete character, < 4 bytes)
  std::string text_;     // decoded text not released yet
  bool stopped_ = false;
};

struct GenerateStep {
  int32_t id = -1;                           // the generated token
  std::string text;                          // UTF-8 text released with it (may be "")
  FinishReason finish = FinishReason::None;  // set on the last step only
  // With GenerateParams::logprobs >= 0: log p(id) (natural log) and the top alternatives as
  // (id, log p) by descending probability (ties: lower id first); logprob is NaN otherwise.
  float logprob = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::pair<int32_t, float>> top_logprobs;
};

// The per-token decisions of a generation (sampling, end-of-generation, text, stop strings,
// max_tokens, the context limit), apart from evaluation: Generator drives one over a Session,
// BatchGenerator one per sequence of a batch.
//   on_prompt(logits of the prompt's last row)
//   loop: begin_step(step) -> true: evaluate step.id, end_step(step, its logits); false: last step
class GenerationLoop {
 public:
  // Checks params, and the prompt against the model and n_ctx (non-empty, ids in the
  // vocabulary, embedding rows of n_embd, at most n_ctx rows): throws InvalidArgument.
  GenerationLoop(const Model& model, int n_ctx, const SessionInput& prompt, const GenerateParams& params);
  // The prompt [prompt_ids] was evaluated: samples the first token, or ends the generation with
  // no step at all (max_tokens 0: Length; an end-of-generation token first: Eos).
  void on_prompt(const float* logits, const std::vector<int32_t>& prompt_ids);
  // Fills out with the pending token (id, text, log-probabilities) and decides whether the
  // generation ends with it (stop string, max_tokens, or n_past == n_ctx); then out.finish is
  // set, the held-back text flushed into out.text, and false returned. true: the token must be
  // evaluated next and end_step called with its logits.
  bool begin_step(GenerateStep& out, int n_past);
  void end_step(GenerateStep& out, const float* logits);  // samples the next token (or Eos)

  bool done() const { return done_; }  // no more steps
  FinishReason finish_reason() const { return finish_; }
  int n_generated() const { return n_generated_; }
  uint64_t seed() const { return sampler_.params().seed; }
  // prompt ids (placeholders for embedding rows) + the tokens given to end_step: the rows the
  // sequence's cache holds between steps
  const std::vector<int32_t>& history() const { return history_; }
  void fail() { done_ = true, finish_ = FinishReason::None; }  // a step failed: the generation ends

 private:
  void sample(const float* logits);  // sets pending_ (+ its log-probabilities) or finish_ = Eos

  const Model& model_;
  int n_ctx_;
  GenerateParams params_;
  Sampler sampler_;
  TextStream text_;
  std::vector<int32_t> history_;
  int32_t pending_ = -1;  // sampled, not yet returned
  float pending_logprob_ = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::pair<int32_t, float>> pending_top_;
  std::vector<std::pair<float, int32_t>> scratch_;  // [n_vocab] (logit, id) for the top alternatives
  int n_generated_ = 0;
  bool done_ = false;
  FinishReason finish_ = FinishReason::None;
};

struct GenerateTimings {
  double prompt_ms = 0;  // Session::eval_prompt
  double gen_ms = 0;     // sampling and evaluation of generated tokens
};

// One generation over a Session. Not thread-safe; the session must outlive the Generator and
// must not be used by anything else while the generation runs: a Generator whose session was
// changed by another call throws Error at its next step instead of continuing from a wrong state.
//
// The step of a token is returned once the token is known to be the last one or the next token
// has been sampled (the loop runs one token ahead), so that the last step carries the finish
// reason and all remaining text, even when generation ends with an end-of-generation token.
class Generator {
 public:
  // Checks params and prompt (non-empty, ids in the vocabulary, at most n_ctx tokens) and
  // throws InvalidArgument; evaluates nothing yet. The prompt: token ids (a std::vector<int32_t>
  // converts), or token ids and embedding rows (e.g. images) with a kind per row, the embedding
  // rows of the model's n_embd; prefix reuse compares ids and embedding-row hashes.
  Generator(Session& session, SessionInput prompt, const GenerateParams& params);

  // Evaluates the prompt and samples the first token; next() calls it when needed.
  void start();
  // Produces the next step. Returns false when generation has ended (finish_reason() says why;
  // generating no token at all is possible: max_tokens 0, an end-of-generation token first).
  // A step that throws ends the generation (finish reason None).
  bool next(GenerateStep& out);

  bool done() const { return loop_.done(); }  // the last step was returned (or there was none)
  FinishReason finish_reason() const { return loop_.finish_reason(); }
  int n_prompt() const { return static_cast<int>(prompt_.size()); }
  int n_reused() const { return n_reused_; }  // prompt tokens kept from the cache
  int n_generated() const { return loop_.n_generated(); }
  uint64_t seed() const { return loop_.seed(); }
  const GenerateTimings& timings() const { return timings_; }

 private:
  void check_session() const;

  Session& session_;
  SessionInput prompt_;  // [n_prompt] rows
  GenerationLoop loop_;
  int n_reused_ = 0;
  bool started_ = false;
  GenerateTimings timings_;
};

}  // namespace akvq
