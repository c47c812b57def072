// Sequence: a KV cache and the rows it holds (see sequence.h).
#include "api/sequence.h"

#include <algorithm>

#include "akvq/error.h"
#include "api/model_impl.h"

namespace akvq {

Sequence::Sequence(const Model& model, int n_ctx_, const std::string& kv,
                   const std::map<std::string, std::string>& kv_options)
    : n_ctx(n_ctx_) {
  const models::Llama& llama = *model.impl().llama;
  n_vocab = llama.hparams().n_vocab;
  n_embd = llama.hparams().n_embd;
  kv::KvConfig kc = llama.kv_config(n_ctx, kv);
  kc.options = kv_options;
  const gguf::File& f = *model.impl().file;
  if (f.has("akvq.tsa_layers")) {  // per-model TSA layers written by the converter / profiler
    const std::vector<int32_t> t = f.get_i32_array("akvq.tsa_layers");
    kc.has_file_tsa = true;
    kc.file_tsa_layers.assign(t.begin(), t.end());
  }
  cache = model.impl().make_cache(kc);
}

void Sequence::check_input(const SessionInput& in, size_t n_keep, const char* what) const {
  if (in.empty()) throw InvalidArgument(std::string(what) + ": no tokens");
  bool has_embd = false;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in.is_embedding(i)) {
      has_embd = true;
      continue;
    }
    const int32_t id = in.ids()[i];
    if (id < 0 || id >= n_vocab) {
      throw InvalidArgument(std::string(what) + ": token id " + std::to_string(id) + " at index " + std::to_string(i) +
                            " out of range [0, " + std::to_string(n_vocab) + ")");
    }
  }
  if (has_embd && in.n_embd() != n_embd) {
    throw InvalidArgument(std::string(what) + ": embedding rows have width " + std::to_string(in.n_embd()) +
                          " but the model's n_embd is " + std::to_string(n_embd));
  }
  if (n_keep + in.size() > static_cast<size_t>(n_ctx)) {
    throw InvalidArgument(std::string(what) + ": context overflow: " + std::to_string(n_keep) +
                          " tokens in the cache + " + std::to_string(in.size()) +
                          " new exceed n_ctx = " + std::to_string(n_ctx));
  }
}

int Sequence::reusable_prefix(const SessionInput& in) const {
  int n = 0;
  const int limit = static_cast<int>(std::min(tokens.size(), in.size() - 1));
  while (n < limit && tokens[n] == in.ids()[n] && hashes[n] == in.hashes()[n]) ++n;
  // Evaluation is batch-invariant (every kernel computes a row the same way whatever the chunk
  // or batch it is in), so only the cache decides what can be restored.
  return cache->restorable(n);
}

int Sequence::checkpoint_position(const SessionInput& in) {
  const int n = static_cast<int>(in.size());
  for (int i = n - 1; i > 0; --i) {
    if (in.kinds()[i - 1] == TokenKind::Vision && in.kinds()[i] != TokenKind::Vision) return i;
  }
  return n - 1;
}

void Sequence::truncate(int n) {
  if (n == 0) {
    cache->clear();
  } else {
    cache->truncate(n);
  }
  tokens.resize(n);
  kinds.resize(n);
  hashes.resize(n);
}

void Sequence::commit(const SessionInput& in, size_t off, size_t len) {
  tokens.insert(tokens.end(), in.ids().begin() + off, in.ids().begin() + off + len);
  kinds.insert(kinds.end(), in.kinds().begin() + off, in.kinds().begin() + off + len);
  hashes.insert(hashes.end(), in.hashes().begin() + off, in.hashes().begin() + off + len);
}

void Sequence::commit_token(int32_t id, TokenKind kind) {
  tokens.push_back(id);
  kinds.push_back(kind);
  hashes.push_back(0);
}

models::LlamaSeq Sequence::rows(const SessionInput& in, size_t off, int len, float* logits, bool all_logits) {
  models::LlamaSeq s;
  s.in.ids = in.ids().data() + off;
  if (in.n_embd() > 0) {
    s.in.embd_index = in.embd_index().data() + off;
    s.in.embd = in.embeddings().data();
  }
  s.n = len;
  s.cache = cache.get();
  s.logits = logits;
  s.all_logits = all_logits;
  return s;
}

}  // namespace akvq
