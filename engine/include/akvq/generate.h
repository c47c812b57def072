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
#include <string>
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

  bool done() const { return done_; }  // the last step was returned (or there was none)
  FinishReason finish_reason() const { return finish_; }
  int n_prompt() const { return static_cast<int>(prompt_.size()); }
  int n_reused() const { return n_reused_; }  // prompt tokens kept from the cache
  int n_generated() const { return n_generated_; }
  uint64_t seed() const { return sampler_.params().seed; }
  const GenerateTimings& timings() const { return timings_; }

 private:
  void sample(const float* logits);  // sets pending_ or finish_ = Eos
  void check_session() const;

  Session& session_;
  SessionInput prompt_;  // [n_prompt] rows
  GenerateParams params_;
  Sampler sampler_;
  TextStream text_;
  std::vector<int32_t> history_;  // prompt ids (placeholders for embedding rows) + generated tokens
  int32_t pending_ = -1;          // sampled, not yet returned
  int n_reused_ = 0;
  int n_generated_ = 0;
  bool started_ = false;
  bool done_ = false;
  FinishReason finish_ = FinishReason::None;
  GenerateTimings timings_;
};

}  // namespace akvq
