// Tokenizers built from a GGUF vocabulary: `gpt2` byte-level BPE (with merges and the
// pre-tokenizer named by tokenizer.ggml.pre) and `llama` SentencePiece (scores, byte fallback).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace akvq {
namespace gguf {
class File;
}

enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* keys; throws FormatError when they are missing or inconsistent
  // (e.g. merges naming unknown tokens, ids out of range) or the model/pre name is unsupported.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& f);
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS when the vocabulary says so (tokenizer.ggml.add_bos_token; default
  // true for `llama`, false for `gpt2`), append EOS when add_eos_token says so.
  // parse_special: text matching a control/user-defined token's text (e.g. "<|im_start|>")
  // becomes that token instead of being split.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special) const = 0;
  // Text of one token as bytes (may be an incomplete UTF-8 sequence). Control tokens give ""
  // unless render_special.
  virtual std::string piece(int32_t id, bool render_special = false) const = 0;
  // Concatenated pieces; for SentencePiece the leading space of the first piece is dropped
  // when the vocabulary adds a space prefix.
  virtual std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;

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
