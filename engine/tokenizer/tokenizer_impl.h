// Internal classes of the tokenizer area: special-token splitting and the two vocabularies.
#pragma once
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace akvq {

// A piece of the input: raw text [begin, end) to tokenize, or one special token (id >= 0).
struct Fragment {
  size_t begin = 0, end = 0;
  int32_t id = -1;
};

// Finds control / user-defined token texts in raw text (longest match at each position).
class SpecialMatcher {
 public:
  void build(const std::vector<std::string>& tokens, const std::vector<TokenType>& types);
  std::vector<Fragment> split(const std::string& text, bool parse_special) const;

 private:
  struct Entry {
    const std::string* text;
    int32_t id;
    bool control;
  };
  std::vector<Entry> by_first_[256];  // candidates by first byte, longest first
};

// Hashes a pair of token ids into one key.
inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// `gpt2`: byte-level BPE with ranked merges.
class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(const TokenizerVocab& v);
  std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special) const override;
  std::string piece(int32_t id, bool render_special = false) const override;
  // BPE of one pre-tokenized piece (raw bytes), appended to out.
  void encode_piece(const std::string& bytes, std::vector<int32_t>& out) const;

 private:
  PreType pre_ = PreType::Gpt2;
  bool ignore_merges_ = false;  // llama-bpe: a piece that is a whole token is emitted directly
  int32_t byte_token_[256];  // token of each byte's byte-level code point, -1 when absent
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (l, r) -> (rank, merged)
  SpecialMatcher specials_;
};

// `llama`: SentencePiece BPE (merge the adjacent pair whose concatenation is the
// highest-scoring token), U+2581 for spaces, byte fallback.
class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(const TokenizerVocab& v);
  std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special) const override;
  std::string piece(int32_t id, bool render_special = false) const override;
  std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const override;
  // SentencePiece BPE of escaped text (spaces already U+2581), appended to out.
  void encode_escaped(const std::string& text, std::vector<int32_t>& out) const;

 private:
  bool add_space_prefix_ = true;
  std::string prepend_scheme_;  // "" | "always" | "first" | "never" (TokenizerVocab::prepend_scheme)
  int32_t unk_ = -1;
  int32_t byte_token_[256];
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t> piece_to_id_;  // tokens that merges may produce
  SpecialMatcher specials_;
};

}  // namespace akvq
