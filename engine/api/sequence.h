// Sequence (internal): one sequence's context, its KV cache and the rows the cache holds (ids,
// kinds, content hashes). A Session keeps one; a BatchGenerator keeps one per slot. Evaluation
// itself is models::Llama::forward / forward_batch over the caches.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "akvq/engine.h"
#include "kv/kv_cache.h"
#include "models/llama.h"

namespace akvq {

struct Sequence {
  // A cache of `kv` mode for n_ctx tokens of model (kv_options validated by the mode; the
  // model file's TSA layers, `akvq.tsa_layers`, apply unless the options name them).
  Sequence(const Model& model, int n_ctx, const std::string& kv, const std::map<std::string, std::string>& kv_options);

  std::unique_ptr<kv::KvCache> cache;
  int n_ctx = 0;
  int n_vocab = 0, n_embd = 0;
  std::vector<int32_t> tokens;   // [n_past] token ids (placeholders for embedding rows)
  std::vector<TokenKind> kinds;  // [n_past]
  std::vector<uint64_t> hashes;  // [n_past] 0 for token rows, content hash for embedding rows

  int n_past() const { return static_cast<int>(tokens.size()); }
  // Throws InvalidArgument (naming `what`) for an empty input, a token id out of the
  // vocabulary, embedding rows of the wrong width, or n_keep + in.size() > n_ctx.
  void check_input(const SessionInput& in, size_t n_keep, const char* what = "[session] eval") const;
  // The longest prefix of the cache that matches in (ids and hashes), is shorter than in (its
  // last row is always evaluated again) and can be restored exactly (KvCache::restorable).
  int reusable_prefix(const SessionInput& in) const;
  // Where a prompt's evaluation marks its reuse point (KvCache::checkpoint): the end of its last
  // run of vision rows when text follows (a next prompt about the same image diverges after it),
  // else its last row (a next turn extends the prompt; the same prompt again re-evaluates its last
  // row). 0: none (a one-row prompt).
  static int checkpoint_position(const SessionInput& in);
  void truncate(int n);  // keeps the first n rows (0: clears the cache, exact for every mode)
  // Records rows [off, off + len) of in as appended (after a forward that appended them).
  void commit(const SessionInput& in, size_t off, size_t len);
  void commit_token(int32_t id, TokenKind kind);  // one token row (a generated token)
  // The forward call of rows [off, off + len) of in, logits as LlamaSeq says.
  models::LlamaSeq rows(const SessionInput& in, size_t off, int len, float* logits, bool all_logits);
};

}  // namespace akvq
