// Tokenizers built from a GGUF vocabulary: `gpt2` byte-level BPE (with merges and the
// pre-tokenizer named by tokenizer.ggml.pre) and `llama` SentencePiece (scores, byte fallback).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace akvq {
namespace gguf {
class File;
}

enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

// The tokenizer.ggml.* metadata as plain data (from_gguf reads it; tests build it directly).
struct TokenizerVocab {
  std::string model;                                       // tokenizer.ggml.model: "gpt2" | "llama"
  std::string pre = "default";                             // tokenizer.ggml.pre (gpt2 only)
  std::vector<std::string> tokens;                         // [n_vocab]
  std::vector<float> scores;                               // [n_vocab] or empty (llama: required)
  std::vector<int32_t> types;                              // [n_vocab] TokenType values, or empty (all normal)
  std::vector<std::string> merges;                         // gpt2: "left right", highest priority first
  int64_t bos = -1, eos = -1, eot = -1, unk = -1;          // -1: absent
  std::optional<bool> add_bos, add_eos, add_space_prefix;  // unset: the model's default
  // akvq.tokenizer.prepend_scheme (llama only; written by our converter from Hugging Face's Metaspace
  // pre-tokenizer). "" (absent): llama.cpp's rule, a space before the text and after every special
  // token. "always" / "first" / "never": Hugging Face's rule, which adds no space to text that already
  // starts with one and, for "first", only prefixes the start of the input (not text after a special
  // token: `legacy: false` Llama tokenizers).
  std::string prepend_scheme;
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* keys; throws FormatError when they are missing or inconsistent
  // (e.g. merges naming unknown tokens, ids out of range) or the model/pre name is unsupported.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& f);
  // Same validation, from plain data.
  static std::unique_ptr<Tokenizer> from_vocab(const TokenizerVocab& v);
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS when the vocabulary says so (tokenizer.ggml.add_bos_token; default
  // true for `llama`, false for `gpt2`), append EOS when add_eos_token says so.
  // parse_special: text matching a control token's text (e.g. "<|im_start|>") becomes that
  // token instead of being split. User-defined tokens are always matched (as Hugging Face,
  // SentencePiece and llama.cpp do). Longest match wins; the text between is tokenized normally.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special) const = 0;
  // Text of one token as bytes (may be an incomplete UTF-8 sequence). Control tokens give ""
  // unless render_special.
  virtual std::string piece(int32_t id, bool render_special = false) const = 0;
  // Concatenated pieces; for SentencePiece the leading space of the first piece is dropped
  // when the vocabulary adds a space prefix.
  virtual std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;
  // Throws InvalidArgument when id is outside [0, n_vocab).
  void check_id(int32_t id) const;

  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos() const { return bos_; }  // -1 when none
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }  // end-of-turn (e.g. <|im_end|>), -1 when none
  bool add_bos() const { return add_bos_; }
  bool is_eog(int32_t id) const;  // eos, eot, or any other end-of-generation token
  TokenType type(int32_t id) const;
  const std::string& text(int32_t id) const;  // raw vocabulary string

 protected:
  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::vector<int32_t> eog_ids_;
  int32_t bos_ = -1, eos_ = -1, eot_ = -1;
  bool add_bos_ = false, add_eos_ = false;
};

}  // namespace akvq
