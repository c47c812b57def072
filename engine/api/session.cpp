// Session: KV cache + workspace + thread pool over a shared Model; chunked evaluation.
#include <algorithm>
#include <cmath>
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
  std::vector<int32_t> tokens;   // [n_past] token ids (placeholders for embedding rows)
  std::vector<TokenKind> kinds;  // [n_past]
  std::vector<uint64_t> hashes;  // [n_past] 0 for token rows, content hash for embedding rows
  std::vector<float> logits;     // [n_vocab] of the last evaluated token

  // Checks the input before anything is touched (n_keep: tokens of the cache that stay).
  void check_input(const SessionInput& in, size_t n_keep) const {
    if (in.empty()) throw InvalidArgument("[session] eval: no tokens");
    const int nv = llama->hparams().n_vocab;
    bool has_embd = false;
    for (size_t i = 0; i < in.size(); ++i) {
      if (in.is_embedding(i)) {
        has_embd = true;
        continue;
      }
      const int32_t id = in.ids()[i];
      if (id < 0 || id >= nv) {
        throw InvalidArgument("[session] eval: token id " + std::to_string(id) + " at index " + std::to_string(i) +
                              " out of range [0, " + std::to_string(nv) + ")");
      }
    }
    if (has_embd && in.n_embd() != llama->hparams().n_embd) {
      throw InvalidArgument("[session] eval: embedding rows have width " + std::to_string(in.n_embd()) +
                            " but the model's n_embd is " + std::to_string(llama->hparams().n_embd));
    }
    if (n_keep + in.size() > static_cast<size_t>(params.n_ctx)) {
      throw InvalidArgument("[session] eval: context overflow: " + std::to_string(n_keep) + " tokens in the cache + " +
                            std::to_string(in.size()) + " new exceed n_ctx = " + std::to_string(params.n_ctx));
    }
  }

  // The largest n' <= n to which the session can be truncated with the state a fresh session
  // reaches on tokens[0, n'). Evaluation is batch-invariant (every kernel computes a token's row
  // the same way whatever the chunk it is in, see KvCache::attend), so only the cache decides.
  int cache_restorable(int n) const { return cache->restorable(n); }

  void keep(int n) {
    tokens.resize(n);
    kinds.resize(n);
    hashes.resize(n);
  }

  // Evaluates the input in chunks of n_batch. out: all logits [in.size(), n_vocab] when all,
  // else the last row's logits. On failure the cache is rolled back to where it was.
  void run(const SessionInput& in, float* out, bool all) {
    check_input(in, tokens.size());
    const int n_past = static_cast<int>(tokens.size());
    const int n = static_cast<int>(in.size());
    const int64_t nv = llama->hparams().n_vocab;
    const bool mixed = in.n_embd() > 0;
    try {
      cache->set_kinds(in.kinds().data(), n);
      for (int off = 0; off < n; off += params.n_batch) {
        const int len = std::min(params.n_batch, n - off);
        const bool last = off + len == n;
        float* lg = all ? out + off * nv : (last ? out : nullptr);
        models::LlamaInput rows;
        rows.ids = in.ids().data() + off;
        if (mixed) {
          rows.embd_index = in.embd_index().data() + off;
          rows.embd = in.embeddings().data();
        }
        llama->forward(rows, len, *cache, ws, *pool, lg, all);
        tokens.insert(tokens.end(), in.ids().begin() + off, in.ids().begin() + off + len);
        kinds.insert(kinds.end(), in.kinds().begin() + off, in.kinds().begin() + off + len);
        hashes.insert(hashes.end(), in.hashes().begin() + off, in.hashes().begin() + off + len);
      }
    } catch (...) {
      cache->truncate(n_past);
      keep(n_past);
      throw;
    }
  }

  // Evaluates in after the longest restorable cached prefix that matches it (ids and hashes),
  // re-evaluating at least its last row.
  const float* eval_prompt(const SessionInput& in, int* n_reused) {
    check_input(in, 0);
    int n = 0;
    const int limit = static_cast<int>(std::min(tokens.size(), in.size() - 1));
    while (n < limit && tokens[n] == in.ids()[n] && hashes[n] == in.hashes()[n]) ++n;
    n = cache_restorable(n);
    if (n < static_cast<int>(tokens.size())) truncate(n);
    if (n_reused) *n_reused = n;
    run(n == 0 ? in : in.slice(static_cast<size_t>(n), in.size()), logits.data(), false);
    return logits.data();
  }

  void truncate(int n) {
    if (n == 0) {  // exact for every cache
      cache->clear();
    } else {
      cache->truncate(n);
    }
    keep(n);
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
const std::vector<TokenKind>& Session::kinds() const {
  return impl_->kinds;
}
const std::vector<uint64_t>& Session::row_hashes() const {
  return impl_->hashes;
}

void Session::reset() {
  impl_->truncate(0);
}

void Session::truncate(int n) {
  if (n < 0 || n > n_past()) {
    throw InvalidArgument("[session] truncate(" + std::to_string(n) + "): the session holds " +
                          std::to_string(n_past()) + " tokens");
  }
  impl_->truncate(n);
}

const float* Session::eval(const std::vector<int32_t>& ids, TokenKind kind) {
  impl_->run(SessionInput::from_tokens(ids, kind), impl_->logits.data(), false);
  return impl_->logits.data();
}

void Session::eval_all(const std::vector<int32_t>& ids, float* out, TokenKind kind) {
  if (!out) throw InvalidArgument("[session] eval_all: output buffer is null");
  impl_->run(SessionInput::from_tokens(ids, kind), out, true);
}

const float* Session::eval_prompt(const std::vector<int32_t>& ids, TokenKind kind, int* n_reused) {
  return impl_->eval_prompt(SessionInput::from_tokens(ids, kind), n_reused);
}

const float* Session::eval_rows(const SessionInput& input) {
  impl_->run(input, impl_->logits.data(), false);
  return impl_->logits.data();
}

void Session::eval_all_rows(const SessionInput& input, float* out) {
  if (!out) throw InvalidArgument("[session] eval_all_rows: output buffer is null");
  impl_->run(input, out, true);
}

const float* Session::eval_prompt_rows(const SessionInput& input, int* n_reused) {
  return impl_->eval_prompt(input, n_reused);
}

KvSummary Session::kv_summary() const {
  KvSummary s = impl_->cache->summary();
  int64_t kinds[3] = {0, 0, 0};  // every layer stores the session's tokens
  for (TokenKind k : impl_->kinds) ++kinds[static_cast<int>(k) < 3 ? static_cast<int>(k) : 0];
  for (KvLayerStats& l : s.layers) {
    std::copy(kinds, kinds + 3, l.kinds);
    // a single class holding every token (f16): its kinds are the layer's
    if (l.classes.size() == 1 && l.classes[0].tokens == n_past() &&
        l.classes[0].kinds[0] + l.classes[0].kinds[1] + l.classes[0].kinds[2] == 0) {
      std::copy(kinds, kinds + 3, l.classes[0].kinds);
    }
  }
  return s;
}

namespace {
// Head-averaged causal attention probabilities of queries [q0, n) of one layer.
// q: [n, n_head, hd], k: [n, n_head_kv, hd] (RoPE'd); out: [n - q0, n] (zeros after the query).
void attention_probs(const float* q, const float* k, int n, int q0, int n_head, int n_head_kv, int hd, float scale,
                     float* out, cpu::ThreadPool& pool) {
  const int nq = n - q0;
  const int group = n_head / n_head_kv;
  pool.run(nq, [&](int r, int) {
    const int i = q0 + r;
    std::vector<double> acc(static_cast<size_t>(i) + 1, 0.0), sc(static_cast<size_t>(i) + 1);
    for (int h = 0; h < n_head; ++h) {
      const float* qi = q + (int64_t{i} * n_head + h) * hd;
      const int g = h / group;
      double mx = -INFINITY;
      for (int j = 0; j <= i; ++j) {
        const float* kj = k + (int64_t{j} * n_head_kv + g) * hd;
        double d = 0;
        for (int c = 0; c < hd; ++c) d += static_cast<double>(qi[c]) * kj[c];
        sc[j] = d * scale;
        mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (int j = 0; j <= i; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
      for (int j = 0; j <= i; ++j) acc[j] += sc[j] / sum;
    }
    float* o = out + int64_t{r} * n;
    for (int j = 0; j < n; ++j) o[j] = j <= i ? static_cast<float>(acc[j] / n_head) : 0.0f;
  });
}
}  // namespace

void Session::attention_profile(const SessionInput& input, int q_begin, float* out) {
  Impl& s = *impl_;
  if (!out) throw InvalidArgument("[session] attention_profile: output buffer is null");
  s.check_input(input, 0);
  const int n = static_cast<int>(input.size());
  if (q_begin < 0 || q_begin >= n) {
    throw InvalidArgument("[session] attention_profile: q_begin = " + std::to_string(q_begin) +
                          " is outside the input [0, " + std::to_string(n) + ")");
  }
  const models::LlamaHparams& hp = s.llama->hparams();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
  const int64_t per_layer = int64_t{n - q_begin} * n;
  const float* q_layer = nullptr;  // the current layer's RoPE'd queries (workspace, valid until its append)
  struct HookGuard {               // the hook is set for this call only
    models::LlamaWorkspace& ws;
    ~HookGuard() { ws.hook = nullptr; }
  } guard{s.ws};
  s.ws.hook = [&](const char* name, int il, const float* data, int64_t, int64_t) {
    if (il < 0) return;
    if (name[0] == 'q' && name[1] == 0) q_layer = data;
    if (name[0] == 'k' && name[1] == 0 && q_layer) {
      attention_probs(q_layer, data, n, q_begin, hp.n_head, hp.n_head_kv, hp.head_dim, scale, out + il * per_layer,
                      *s.pool);
    }
  };
  s.truncate(0);
  SessionParams saved = s.params;
  s.params.n_batch = n;  // one forward pass: every layer sees all queries and keys at once
  try {
    s.run(input, s.logits.data(), false);
  } catch (...) {
    s.params = saved;
    throw;
  }
  s.params = saved;
}

}  // namespace akvq
