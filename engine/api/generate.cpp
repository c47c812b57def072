// The generation loop (see akvq/generate.h): sampling, end-of-generation, UTF-8 assembly, stop
// strings, max_tokens and the context limit, in one place for every frontend.
#include "akvq/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <utility>

#include "akvq/error.h"

namespace akvq {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the UTF-8 character starting at s[i] when it is complete and valid; 0 when s ends
// inside a valid prefix of a character (more bytes may complete it); -k when the k bytes at i
// are an invalid maximal subpart (to be replaced by one U+FFFD).
int utf8_char(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned c = b(i);
  if (c < 0x80) return 1;
  int n = 0;                      // continuation bytes needed
  unsigned lo = 0x80, hi = 0xBF;  // range of the first continuation byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 2;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 3;
    if (c == 0xF0) lo = 0x90;  // no overlong forms
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return -1;  // a continuation byte or a lead byte that never starts a valid character
  }
  for (int j = 1; j <= n; ++j) {
    if (i + j >= s.size()) return 0;
    const unsigned x = b(i + j);
    const bool ok = j == 1 ? (x >= lo && x <= hi) : (x >= 0x80 && x <= 0xBF);
    if (!ok) return -j;
  }
  return n + 1;
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const int n = utf8_char(s, i);
    if (n <= 0) return false;
    i += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Eos: return "eos";
    case FinishReason::Context: return "context";
    case FinishReason::None: break;
  }
  return "";
}

uint64_t random_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

void GenerateParams::validate() const {
  if (max_tokens < 0) throw InvalidArgument("[generate] max_tokens must be >= 0, got " + std::to_string(max_tokens));
  if (logprobs < -1 || logprobs > kMaxLogprobs) {
    throw InvalidArgument("[generate] logprobs must be -1 (none) or in [0, " + std::to_string(kMaxLogprobs) +
                          "], got " + std::to_string(logprobs));
  }
  sampling.validate();
  for (size_t i = 0; i < stop.size(); ++i) {
    if (!valid_utf8(stop[i]))
      throw InvalidArgument("[generate] stop[" + std::to_string(i) + "] is not valid UTF-8 (it could never match)");
  }
}

// ---- TextStream ----

TextStream::TextStream(std::vector<std::string> stop) {
  for (std::string& s : stop) {
    if (s.empty()) continue;
    max_stop_ = std::max(max_stop_, s.size());
    stop_.push_back(std::move(s));
  }
}

std::string TextStream::decode(bool final) {
  size_t i = 0;
  while (i < raw_.size()) {
    const int n = utf8_char(raw_, i);
    if (n > 0) {
      text_.append(raw_, i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
    } else if (n < 0) {
      text_ += kReplacement;
      i += static_cast<size_t>(-n);
    } else if (final) {  // the text ends inside a character
      text_ += kReplacement;
      i = raw_.size();
    } else {
      break;  // hold the incomplete character
    }
  }
  raw_.erase(0, i);

  // A stop string anywhere in the unreleased text (released text never holds the start of one:
  // a suffix that could start a stop string is always held back). The text is cut before the
  // occurrence that ends first (on a tie, the longer one), which is the one a generation meets
  // first whatever the token boundaries are, so the result does not depend on them.
  size_t cut = std::string::npos, cut_end = std::string::npos;
  for (const std::string& s : stop_) {
    const size_t i = text_.find(s);
    if (i == std::string::npos) continue;
    if (i + s.size() < cut_end || (i + s.size() == cut_end && i < cut)) {
      cut = i;
      cut_end = i + s.size();
    }
  }
  if (cut != std::string::npos) {
    std::string out = text_.substr(0, cut);
    text_.clear();
    raw_.clear();
    stopped_ = true;
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string (it starts at a
  // character boundary: stop strings are valid UTF-8, so their first byte is a lead byte).
  size_t hold = 0;
  if (!final) {
    for (const std::string& s : stop_) {
      for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k) {
        if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
      }
    }
  }
  std::string out = text_.substr(0, text_.size() - hold);
  text_.erase(0, text_.size() - hold);
  return out;
}

std::string TextStream::feed(const std::string& bytes) {
  if (stopped_) return {};
  raw_ += bytes;
  return decode(false);
}

std::string TextStream::finish() {
  if (stopped_) return {};
  return decode(true);
}

// ---- GenerationLoop ----

GenerationLoop::GenerationLoop(const Model& model, int n_ctx, const SessionInput& prompt, const GenerateParams& params)
    : model_(model), n_ctx_(n_ctx), params_(params), sampler_(params.sampling), text_(params.stop) {
  params_.validate();
  const ModelInfo& info = model_.info();
  if (prompt.empty()) throw InvalidArgument("[generate] the prompt has no tokens");
  if (prompt.size() > static_cast<size_t>(n_ctx)) {
    throw InvalidArgument("[generate] the prompt has " + std::to_string(prompt.size()) +
                          " tokens, more than the context size n_ctx = " + std::to_string(n_ctx));
  }
  bool has_embd = false;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt.is_embedding(i)) {
      has_embd = true;
      continue;
    }
    const int32_t id = prompt.ids()[i];
    if (id < 0 || id >= info.n_vocab) {
      throw InvalidArgument("[generate] prompt token " + std::to_string(i) + " has id " + std::to_string(id) +
                            ", outside the vocabulary [0, " + std::to_string(info.n_vocab) + ")");
    }
  }
  if (has_embd && prompt.n_embd() != info.n_embd) {
    throw InvalidArgument("[generate] the prompt's embedding rows have width " + std::to_string(prompt.n_embd()) +
                          " but the model's n_embd is " + std::to_string(info.n_embd));
  }
}

void GenerationLoop::sample(const float* logits) {
  const int32_t n_vocab = model_.info().n_vocab;
  const int32_t tok = sampler_.sample(logits, n_vocab, history_);
  if (model_.is_eog(tok)) {
    finish_ = FinishReason::Eos;
    return;
  }
  pending_ = tok;
  if (params_.logprobs < 0) return;
  // log-softmax of the raw logits (NaN counts as -inf, as in the sampler)
  auto val = [](float l) { return std::isnan(l) ? -INFINITY : l; };
  float mx = -INFINITY;
  for (int32_t i = 0; i < n_vocab; ++i) mx = std::max(mx, val(logits[i]));
  double sum = 0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(val(logits[i])) - mx);
  const double lse = mx + std::log(sum);
  pending_logprob_ = static_cast<float>(val(logits[tok]) - lse);
  pending_top_.clear();
  const int k = std::min(params_.logprobs, n_vocab);
  if (k == 0) return;
  scratch_.resize(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) scratch_[i] = {val(logits[i]), i};
  auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::partial_sort(scratch_.begin(), scratch_.begin() + k, scratch_.end(), better);
  for (int i = 0; i < k; ++i) {
    pending_top_.emplace_back(scratch_[i].second, static_cast<float>(scratch_[i].first - lse));
  }
}

void GenerationLoop::on_prompt(const float* logits, const std::vector<int32_t>& prompt_ids) {
  history_ = prompt_ids;
  if (params_.max_tokens == 0) {
    finish_ = FinishReason::Length;
  } else {
    sample(logits);
  }
  done_ = pending_ < 0;  // finished without a token (max_tokens 0, end-of-generation first)
}

bool GenerationLoop::begin_step(GenerateStep& out, int n_past) {
  const int32_t tok = pending_;
  pending_ = -1;
  ++n_generated_;
  out.id = tok;
  out.text = text_.feed(model_.token_piece(tok));
  out.finish = FinishReason::None;
  out.logprob = pending_logprob_;
  out.top_logprobs = pending_top_;
  if (text_.stopped()) {
    finish_ = FinishReason::Stop;
  } else if (n_generated_ >= params_.max_tokens) {
    finish_ = FinishReason::Length;
  } else if (n_past >= n_ctx_) {
    finish_ = FinishReason::Context;  // tok is returned but cannot be evaluated
  } else {
    return true;
  }
  out.text += text_.finish();
  out.finish = finish_;
  done_ = true;
  return false;
}

void GenerationLoop::end_step(GenerateStep& out, const float* logits) {
  history_.push_back(out.id);
  sample(logits);  // may set finish_ = Eos
  if (finish_ != FinishReason::None) {
    out.text += text_.finish();
    out.finish = finish_;
    done_ = true;
  }
}

// ---- Generator ----

Generator::Generator(Session& session, SessionInput prompt, const GenerateParams& params)
    : session_(session),
      prompt_(std::move(prompt)),
      loop_(session.model(), session.params().n_ctx, prompt_, params) {}

void Generator::check_session() const {
  const std::vector<int32_t>& t = session_.tokens();
  const std::vector<int32_t>& h = loop_.history();
  if (t.size() != h.size() || !std::equal(t.begin(), t.end(), h.begin())) {
    throw Error(
        "[generate] the session was used by another call since this generation started; "
        "start a new generation");
  }
}

void Generator::start() {
  if (started_) return;
  started_ = true;
  try {
    const auto t0 = Clock::now();
    const float* logits = session_.eval_prompt_rows(prompt_, &n_reused_);
    timings_.prompt_ms = ms_since(t0);
    const auto t1 = Clock::now();
    loop_.on_prompt(logits, prompt_.ids());
    timings_.gen_ms += ms_since(t1);
  } catch (...) {
    loop_.fail();
    throw;
  }
}

bool Generator::next(GenerateStep& out) {
  if (!started_) start();
  if (loop_.done()) return false;
  const auto t0 = Clock::now();
  try {
    check_session();
    if (loop_.begin_step(out, session_.n_past())) {
      loop_.end_step(out, session_.eval({out.id}, TokenKind::Generated));
    }
  } catch (...) {
    loop_.fail();
    throw;
  }
  timings_.gen_ms += ms_since(t0);
  return true;
}

}  // namespace akvq
