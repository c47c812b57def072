// Session: KV cache + workspace + thread pool over a shared Model; chunked evaluation.
#include <algorithm>
#include <string>

#include "akvq/error.h"
#include "api/model_impl.h"
#include "cpu/thread_pool.h"
#include "kv/kv_cache.h"

namespace akvq {

namespace {
constexpr int kMaxCtx = 1 << 20;
constexpr int kMaxThreads = 512;
constexpr int kMaxBatch = 1 << 16;

void check_field(const char* field, int v, int lo, int hi) {
  if (v < lo || v > hi) {
    throw InvalidArgument(std::string("[session] ") + field + " = " + std::to_string(v) + " is out of range [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
}
}  // namespace

void SessionParams::validate() const {
  check_field("n_ctx", n_ctx, 1, kMaxCtx);
  check_field("n_threads", n_threads, 0, kMaxThreads);
  check_field("n_batch", n_batch, 1, kMaxBatch);
  if (kv.empty()) throw InvalidArgument("[session] kv: empty storage mode");
}

struct Session::Impl {
  std::shared_ptr<const Model> model;
  SessionParams params;
  const models::Llama* llama = nullptr;
  std::unique_ptr<cpu::ThreadPool> pool;
  std::unique_ptr<kv::KvCache> cache;
  models::LlamaWorkspace ws;
  std::vector<int32_t> tokens;  // [n_past]
  std::vector<float> logits;    // [n_vocab] of the last evaluated token

  // Checks ids before anything is touched (n_keep: tokens of the cache that stay).
  void check_ids(const std::vector<int32_t>& ids, size_t n_keep) const {
    if (ids.empty()) throw InvalidArgument("[session] eval: no tokens");
    const int nv = llama->hparams().n_vocab;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= nv) {
        throw InvalidArgument("[session] eval: token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                              " out of range [0, " + std::to_string(nv) + ")");
      }
    }
    if (n_keep + ids.size() > static_cast<size_t>(params.n_ctx)) {
      throw InvalidArgument("[session] eval: context overflow: " + std::to_string(n_keep) + " tokens in the cache + " +
                            std::to_string(ids.size()) + " new exceed n_ctx = " + std::to_string(params.n_ctx));
    }
  }

  // Evaluates ids in chunks of n_batch. out: all logits [ids.size(), n_vocab] when all, else
  // the last token's logits. On failure the cache is rolled back to where it was.
  // The largest n' <= n to which the session can be truncated with the state a fresh session
  // reaches on tokens[0, n'). Evaluation is batch-invariant (every kernel computes a token's row
  // the same way whatever the chunk it is in, see KvCache::attend), so only the cache decides.
  int cache_restorable(int n) const { return cache->restorable(n); }

  void run(const std::vector<int32_t>& ids, float* out, bool all, TokenKind kind) {
    check_ids(ids, tokens.size());
    const int n_past = static_cast<int>(tokens.size());
    const int n = static_cast<int>(ids.size());
    const int64_t nv = llama->hparams().n_vocab;
    try {
      const std::vector<TokenKind> kinds(ids.size(), kind);
      cache->set_kinds(kinds.data(), n);
      for (int off = 0; off < n; off += params.n_batch) {
        const int len = std::min(params.n_batch, n - off);
        const bool last = off + len == n;
        float* lg = all ? out + off * nv : (last ? out : nullptr);
        llama->forward(ids.data() + off, len, *cache, ws, *pool, lg, all);
        tokens.insert(tokens.end(), ids.begin() + off, ids.begin() + off + len);
      }
    } catch (...) {
      cache->truncate(n_past);
      tokens.resize(n_past);
      throw;
    }
  }
};

Session::Session(std::shared_ptr<const Model> model, const SessionParams& p) : impl_(std::make_unique<Impl>()) {
  if (!model) throw InvalidArgument("[session] model is null");
  p.validate();
  Impl& s = *impl_;
  s.model = std::move(model);
  s.params = p;
  s.llama = s.model->impl().llama.get();
  kv::KvConfig kc = s.llama->kv_config(p.n_ctx, p.kv);
  kc.options = p.kv_options;
  const gguf::File& f = *s.model->impl().file;
  if (f.has("akvq.tsa_layers")) {  // per-model TSA layers written by the converter / profiler
    const std::vector<int32_t> t = f.get_i32_array("akvq.tsa_layers");
    kc.has_file_tsa = true;
    kc.file_tsa_layers.assign(t.begin(), t.end());
  }
  s.cache = kv::KvCache::create(kc);
  s.pool = std::make_unique<cpu::ThreadPool>(p.n_threads > 0 ? p.n_threads : cpu::ThreadPool::default_threads());
  s.logits.resize(s.llama->hparams().n_vocab);
}

Session::~Session() = default;

const Model& Session::model() const {
  return *impl_->model;
}
const SessionParams& Session::params() const {
  return impl_->params;
}
int Session::n_past() const {
  return static_cast<int>(impl_->tokens.size());
}
const std::vector<int32_t>& Session::tokens() const {
  return impl_->tokens;
}

void Session::reset() {
  impl_->cache->clear();
  impl_->tokens.clear();
}

void Session::truncate(int n) {
  if (n < 0 || n > n_past()) {
    throw InvalidArgument("[session] truncate(" + std::to_string(n) + "): the session holds " +
                          std::to_string(n_past()) + " tokens");
  }
  if (n == 0) {  // exact for every cache
    reset();
    return;
  }
  impl_->cache->truncate(n);
  impl_->tokens.resize(n);
}

const float* Session::eval(const std::vector<int32_t>& ids, TokenKind kind) {
  impl_->run(ids, impl_->logits.data(), false, kind);
  return impl_->logits.data();
}

void Session::eval_all(const std::vector<int32_t>& ids, float* out, TokenKind kind) {
  if (!out) throw InvalidArgument("[session] eval_all: output buffer is null");
  impl_->run(ids, out, true, kind);
}

const float* Session::eval_prompt(const std::vector<int32_t>& ids, TokenKind kind, int* n_reused) {
  impl_->check_ids(ids, 0);
  const std::vector<int32_t>& cached = impl_->tokens;
  int n = 0;
  const int limit = static_cast<int>(std::min(cached.size(), ids.size() - 1));  // re-evaluate >= 1 token
  while (n < limit && cached[n] == ids[n]) ++n;
  n = impl_->cache_restorable(n);
  if (n < n_past()) truncate(n);
  if (n_reused) *n_reused = n;
  return eval(std::vector<int32_t>(ids.begin() + n, ids.end()), kind);
}

KvSummary Session::kv_summary() const {
  return impl_->cache->summary();
}

}  // namespace akvq
