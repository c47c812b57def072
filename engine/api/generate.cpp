// The generation loop (see akvq/generate.h): sampling, end-of-generation, UTF-8 assembly, stop
// strings, max_tokens and the context limit, in one place for every frontend.
#include "akvq/generate.h"

#include <algorithm>
#include <chrono>
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

// ---- Generator ----

Generator::Generator(Session& session, SessionInput prompt, const GenerateParams& params)
    : session_(session), prompt_(std::move(prompt)), params_(params), sampler_(params.sampling), text_(params.stop) {
  params_.validate();
  const int n_ctx = session_.params().n_ctx;
  const ModelInfo& info = session_.model().info();
  if (prompt_.empty()) throw InvalidArgument("[generate] the prompt has no tokens");
  if (prompt_.size() > static_cast<size_t>(n_ctx)) {
    throw InvalidArgument("[generate] the prompt has " + std::to_string(prompt_.size()) +
                          " tokens, more than the context size n_ctx = " + std::to_string(n_ctx));
  }
  bool has_embd = false;
  for (size_t i = 0; i < prompt_.size(); ++i) {
    if (prompt_.is_embedding(i)) {
      has_embd = true;
      continue;
    }
    const int32_t id = prompt_.ids()[i];
    if (id < 0 || id >= info.n_vocab) {
      throw InvalidArgument("[generate] prompt token " + std::to_string(i) + " has id " + std::to_string(id) +
                            ", outside the vocabulary [0, " + std::to_string(info.n_vocab) + ")");
    }
  }
  if (has_embd && prompt_.n_embd() != info.n_embd) {
    throw InvalidArgument("[generate] the prompt's embedding rows have width " + std::to_string(prompt_.n_embd()) +
                          " but the model's n_embd is " + std::to_string(info.n_embd));
  }
}

void Generator::sample(const float* logits) {
  const int32_t tok = sampler_.sample(logits, session_.model().info().n_vocab, history_);
  if (session_.model().is_eog(tok)) {
    finish_ = FinishReason::Eos;
  } else {
    pending_ = tok;
  }
}

void Generator::check_session() const {
  const std::vector<int32_t>& t = session_.tokens();
  if (t.size() != history_.size() || !std::equal(t.begin(), t.end(), history_.begin())) {
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
    history_ = prompt_.ids();
    const auto t1 = Clock::now();
    if (params_.max_tokens == 0) {
      finish_ = FinishReason::Length;
    } else {
      sample(logits);
    }
    done_ = pending_ < 0;  // finished without a token (max_tokens 0, end-of-generation first)
    timings_.gen_ms += ms_since(t1);
  } catch (...) {
    done_ = true;
    throw;
  }
}

bool Generator::next(GenerateStep& out) {
  if (!started_) start();
  if (done_) return false;
  const auto t0 = Clock::now();
  try {
    check_session();
    const int32_t tok = pending_;
    pending_ = -1;
    history_.push_back(tok);
    ++n_generated_;
    out.id = tok;
    out.text = text_.feed(session_.model().token_piece(tok));
    out.finish = FinishReason::None;
    if (text_.stopped()) {
      finish_ = FinishReason::Stop;
    } else if (n_generated_ >= params_.max_tokens) {
      finish_ = FinishReason::Length;
    } else if (session_.n_past() >= session_.params().n_ctx) {
      finish_ = FinishReason::Context;  // tok is returned but cannot be evaluated
    } else {
      sample(session_.eval({tok}, TokenKind::Generated));  // may set finish_ = Eos
    }
    if (finish_ != FinishReason::None) {
      out.text += text_.finish();
      out.finish = finish_;
      done_ = true;
    }
  } catch (...) {
    done_ = true;
    finish_ = FinishReason::None;
    throw;
  }
  timings_.gen_ms += ms_since(t0);
  return true;
}

}  // namespace akvq
