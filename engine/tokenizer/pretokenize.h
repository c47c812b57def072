// Pre-tokenizers of byte-level BPE vocabularies: the regexes named by tokenizer.ggml.pre,
// matched by hand over code points (leftmost alternative wins, greedy quantifiers, as a
// backtracking regex engine would). The text is cut into consecutive pieces that cover it.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace akvq {

enum class PreType {
  Default,  // llama.cpp's for a BPE vocabulary without a known pre-tokenizer: four regexes, each
            // splitting the pieces of the one before: [\p{P}\$\+<=>\^~\|]+, Gpt2's, \p{N}+,
            // [0-9][0-9][0-9] (what a match leaves between matches stays a piece)
  Gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Llama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
           //   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  Qwen2,   // as Llama3 but \p{N} (one digit per piece)
  SmolLM,  // every \p{N} its own piece first, then Gpt2 on the text between them
};

// Maps a tokenizer.ggml.pre name; returns false when unsupported.
//   default -> Default; gpt-2, gpt2 -> Gpt2; llama-bpe, llama3, llama-v3 -> Llama3; qwen2 -> Qwen2;
//   smollm -> SmolLM
bool pre_type_from_name(const std::string& name, PreType* out);

// Byte spans [begin, end) of the pieces of `text` (any bytes; invalid UTF-8 bytes are single
// code points of class "other"). The spans are non-empty, in order and cover the text.
std::vector<std::pair<size_t, size_t>> pre_split(PreType type, const std::string& text);

}  // namespace akvq
