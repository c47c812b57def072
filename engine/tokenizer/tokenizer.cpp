// Tokenizer construction from GGUF metadata, shared validation, special-token splitting and the
// base-class accessors.
#include "tokenizer/tokenizer.h"

#include <akvq/error.h>

#include <algorithm>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer_impl.h"

namespace akvq {

namespace {

[[noreturn]] void fail(const std::string& msg) {
  throw FormatError("[tokenizer] " + msg);
}

void check_opt_id(const char* what, int64_t id, size_t n) {
  if (id < -1 || id >= static_cast<int64_t>(n))
    fail(std::string(what) + " id " + std::to_string(id) + " is out of range [0, " + std::to_string(n) + ")");
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& f) {
  TokenizerVocab v;
  if (!f.has("tokenizer.ggml.model")) fail("missing key tokenizer.ggml.model");
  if (!f.has("tokenizer.ggml.tokens")) fail("missing key tokenizer.ggml.tokens");
  v.model = f.get_str("tokenizer.ggml.model");
  v.pre = f.get_str("tokenizer.ggml.pre", "default");
  v.tokens = f.get_str_array("tokenizer.ggml.tokens");
  if (f.has("tokenizer.ggml.scores")) v.scores = f.get_f32_array("tokenizer.ggml.scores");
  if (f.has("tokenizer.ggml.token_type")) v.types = f.get_i32_array("tokenizer.ggml.token_type");
  if (f.has("tokenizer.ggml.merges")) {
    v.merges = f.get_str_array("tokenizer.ggml.merges");
  } else if (v.model == "gpt2") {  // as llama.cpp: a BPE vocabulary without its merges splits text to bytes
    fail("missing key tokenizer.ggml.merges (a 'gpt2' tokenizer needs its BPE merges)");
  }
  v.bos = f.get_i64("tokenizer.ggml.bos_token_id", -1);
  v.eos = f.get_i64("tokenizer.ggml.eos_token_id", -1);
  v.eot = f.get_i64("tokenizer.ggml.eot_token_id", -1);
  v.unk = f.get_i64("tokenizer.ggml.unknown_token_id", -1);
  if (f.has("tokenizer.ggml.add_bos_token")) v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", false);
  if (f.has("tokenizer.ggml.add_eos_token")) v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
  if (f.has("tokenizer.ggml.add_space_prefix"))
    v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
  v.prepend_scheme = f.get_str("akvq.tokenizer.prepend_scheme", "");
  return from_vocab(v);
}

std::unique_ptr<Tokenizer> Tokenizer::from_vocab(const TokenizerVocab& v) {
  const size_t n = v.tokens.size();
  if (n == 0) fail("tokenizer.ggml.tokens is empty");
  if (n > static_cast<size_t>(INT32_MAX)) fail("too many tokens");
  if (!v.scores.empty() && v.scores.size() != n)
    fail("tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries for " + std::to_string(n) +
         " tokens");
  if (!v.types.empty() && v.types.size() != n)
    fail("tokenizer.ggml.token_type has " + std::to_string(v.types.size()) + " entries for " + std::to_string(n) +
         " tokens");
  for (size_t i = 0; i < v.types.size(); ++i)
    if (v.types[i] < 0 || v.types[i] > 6)
      fail("token " + std::to_string(i) + " has invalid token type " + std::to_string(v.types[i]));
  check_opt_id("bos", v.bos, n);
  check_opt_id("eos", v.eos, n);
  check_opt_id("eot", v.eot, n);
  check_opt_id("unknown token", v.unk, n);

  std::unique_ptr<Tokenizer> t;
  if (v.model == "gpt2")
    t = std::make_unique<BpeTokenizer>(v);
  else if (v.model == "llama")
    t = std::make_unique<SpmTokenizer>(v);
  else
    fail("unsupported tokenizer.ggml.model '" + v.model + "' (supported: gpt2, llama)");

  // end-of-generation set
  static const char* const kEogTexts[] = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"};
  if (t->eot_ < 0) {
    for (const char* s : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>"}) {
      auto it = std::find(t->tokens_.begin(), t->tokens_.end(), s);
      if (it != t->tokens_.end()) {
        t->eot_ = static_cast<int32_t>(it - t->tokens_.begin());
        break;
      }
    }
  }
  auto add_eog = [&](int32_t id) {
    if (id >= 0 && std::find(t->eog_ids_.begin(), t->eog_ids_.end(), id) == t->eog_ids_.end())
      t->eog_ids_.push_back(id);
  };
  add_eog(t->eos_);
  add_eog(t->eot_);
  for (size_t i = 0; i < n; ++i)
    for (const char* s : kEogTexts)
      if (t->tokens_[i] == s) add_eog(static_cast<int32_t>(i));
  return t;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) out += piece(id, render_special);
  return out;
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= n_vocab())
    throw InvalidArgument("[tokenizer] token id " + std::to_string(id) + " is out of range [0, " +
                          std::to_string(n_vocab()) + ")");
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

TokenType Tokenizer::type(int32_t id) const {
  check_id(id);
  return types_[id];
}

const std::string& Tokenizer::text(int32_t id) const {
  check_id(id);
  return tokens_[id];
}

// ---- special tokens ----

void SpecialMatcher::build(const std::vector<std::string>& tokens, const std::vector<TokenType>& types) {
  for (auto& v : by_first_) v.clear();
  for (size_t i = 0; i < tokens.size(); ++i) {
    // control and unknown tokens (as llama.cpp: SentencePiece's "<unk>") only with parse_special,
    // user-defined ones always
    const TokenType ty = types[i];
    const bool control = ty == TokenType::Control || ty == TokenType::Unknown;
    if ((!control && ty != TokenType::UserDefined) || tokens[i].empty()) continue;
    by_first_[static_cast<unsigned char>(tokens[i][0])].push_back(Entry{&tokens[i], static_cast<int32_t>(i), control});
  }
  for (auto& v : by_first_)
    std::stable_sort(v.begin(), v.end(),
                     [](const Entry& a, const Entry& b) { return a.text->size() > b.text->size(); });
}

std::vector<Fragment> SpecialMatcher::split(const std::string& text, bool parse_special) const {
  std::vector<Fragment> out;
  size_t raw_begin = 0;
  for (size_t i = 0; i < text.size();) {
    const Entry* hit = nullptr;
    for (const Entry& e : by_first_[static_cast<unsigned char>(text[i])]) {
      if (e.control && !parse_special) continue;
      if (text.compare(i, e.text->size(), *e.text) == 0) {
        hit = &e;  // longest first
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > raw_begin) out.push_back(Fragment{raw_begin, i, -1});
    out.push_back(Fragment{i, i + hit->text->size(), hit->id});
    i += hit->text->size();
    raw_begin = i;
  }
  if (raw_begin < text.size()) out.push_back(Fragment{raw_begin, text.size(), -1});
  return out;
}

}  // namespace akvq
