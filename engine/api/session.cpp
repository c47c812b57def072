// Session: KV cache + workspace + thread pool over a shared Model; chunked evaluation.
#include <algorithm>
#include <cmath>
#include <string>

#include "akvq/error.h"
#include "api/limits.h"
#include "api/model_impl.h"
#include "api/sequence.h"
#include "cpu/thread_pool.h"
#include "kv/kv_cache.h"

namespace akvq {

void SessionParams::validate() const {
  limits::check_range("session", "n_ctx", n_ctx, 1, limits::kMaxCtx);
  limits::check_range("session", "n_threads", n_threads, 0, limits::kMaxThreads);
  limits::check_range("session", "n_batch", n_batch, 1, limits::kMaxBatch);
  if (kv.empty()) throw InvalidArgument("[session] kv: empty storage mode");
}

struct Session::Impl {
  Impl(std::shared_ptr<const Model> m, const SessionParams& p)
      : model(std::move(m)), params(p), llama(model->impl().llama.get()), seq(*model, p.n_ctx, p.kv, p.kv_options) {}

  std::shared_ptr<const Model> model;
  SessionParams params;
  const models::Llama* llama = nullptr;
  Sequence seq;  // the KV cache and the rows it holds
  std::unique_ptr<cpu::ThreadPool> pool;
  models::LlamaWorkspace ws;
  std::vector<float> logits;  // [n_vocab] of the last evaluated token

  // Evaluates the input in chunks of n_batch. out: all logits [in.size(), n_vocab] when all,
  // else the last row's logits. ckpt (0 < ckpt < in.size(), else ignored): a chunk ends after row
  // ckpt - 1 of in and the cache takes its checkpoint there. On failure the cache is rolled back
  // to where it was.
  void run(const SessionInput& in, float* out, bool all, int ckpt = 0) {
    seq.check_input(in, seq.tokens.size());
    const int n_past = seq.n_past();
    const int n = static_cast<int>(in.size());
    const int64_t nv = llama->hparams().n_vocab;
    try {
      seq.cache->set_kinds(in.kinds().data(), n);
      for (int off = 0; off < n;) {
        int len = std::min(params.n_batch, n - off);
        if (off < ckpt && ckpt < off + len) len = ckpt - off;  // (batch-invariant: same results)
        const bool last = off + len == n;
        float* lg = all ? out + off * nv : (last ? out : nullptr);
        const models::LlamaSeq rows = seq.rows(in, off, len, lg, all);
        model->impl().forward_batch(&rows, 1, ws, *pool);
        seq.commit(in, off, len);
        off += len;
        if (off == ckpt) seq.cache->checkpoint();
        if (off < n && params.interrupt) params.interrupt();
      }
    } catch (...) {
      seq.truncate(n_past);
      throw;
    }
  }

  // Evaluates in after the longest restorable cached prefix that matches it (ids and hashes),
  // re-evaluating at least its last row; marks the prompt's reuse point
  // (Sequence::checkpoint_position) when it lies in the evaluated part.
  const float* eval_prompt(const SessionInput& in, int* n_reused) {
    seq.check_input(in, 0);
    const int n = seq.reusable_prefix(in);
    if (n < seq.n_past()) seq.truncate(n);
    if (n_reused) *n_reused = n;
    const int ckpt = Sequence::checkpoint_position(in) - n;
    run(n == 0 ? in : in.slice(static_cast<size_t>(n), in.size()), logits.data(), false, ckpt);
    return logits.data();
  }
};

Session::Session(std::shared_ptr<const Model> model, const SessionParams& p) {
  if (!model) throw InvalidArgument("[session] model is null");
  p.validate();
  impl_ = std::make_unique<Impl>(std::move(model), p);
  Impl& s = *impl_;
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
  return impl_->seq.n_past();
}
const std::vector<int32_t>& Session::tokens() const {
  return impl_->seq.tokens;
}
const std::vector<TokenKind>& Session::kinds() const {
  return impl_->seq.kinds;
}
const std::vector<uint64_t>& Session::row_hashes() const {
  return impl_->seq.hashes;
}

void Session::reset() {
  impl_->seq.truncate(0);
}

void Session::truncate(int n) {
  if (n < 0 || n > n_past()) {
    throw InvalidArgument("[session] truncate(" + std::to_string(n) + "): the session holds " +
                          std::to_string(n_past()) + " tokens");
  }
  impl_->seq.truncate(n);
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
  KvSummary s = impl_->seq.cache->summary();
  int64_t kinds[3] = {0, 0, 0};  // every layer stores the session's tokens
  for (TokenKind k : impl_->seq.kinds) ++kinds[static_cast<int>(k) < 3 ? static_cast<int>(k) : 0];
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
  if (s.model->impl().gpu) {  // the profile reads the CPU forward's intermediates
    throw Unavailable("[session] attention_profile runs on the CPU: load the model with device='cpu' to profile it");
  }
  s.seq.check_input(input, 0);
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
  s.seq.truncate(0);
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
