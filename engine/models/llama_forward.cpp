// Llama forward pass: each layer is a straight line of named steps over the workspace buffers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "akvq/error.h"
#include "models/llama.h"

namespace akvq::models {

namespace {
// Grows v to at least n elements (never shrinks, so steady state allocates nothing).
template <class T>
T* need(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// x[n, cols] += b[cols] for every row; no-op when the layer has no bias (b.data == nullptr).
void add_bias(float* x, const TensorView& b, int64_t n, int64_t cols) {
  if (!b.data) return;
  const float* bias = static_cast<const float*>(b.data);
  for (int64_t r = 0; r < n; ++r) ops::add_inplace(x + r * cols, bias, cols);
}
}  // namespace

void Llama::forward(const int32_t* ids, int n, kv::KvCache& cache, LlamaWorkspace& ws, cpu::ThreadPool& pool,
                    float* logits, bool all_logits) const {
  LlamaInput in;
  in.ids = ids;
  forward(in, n, cache, ws, pool, logits, all_logits);
}

void Llama::forward(const LlamaInput& in, int n, kv::KvCache& cache, LlamaWorkspace& ws, cpu::ThreadPool& pool,
                    float* logits, bool all_logits) const {
  LlamaSeq seq;
  seq.in = in;
  seq.n = n;
  seq.cache = &cache;
  seq.logits = logits;
  seq.all_logits = all_logits;
  forward_batch(&seq, 1, ws, pool);
}

void Llama::forward_batch(const LlamaSeq* seqs, int n_seqs, LlamaWorkspace& ws, cpu::ThreadPool& pool) const {
  const LlamaHparams& hp = hp_;
  if (n_seqs < 1) throw InvalidArgument("[llama] forward: no sequences");
  int64_t n64 = 0;  // rows of all sequences
  for (int s = 0; s < n_seqs; ++s) {
    const LlamaSeq& sq = seqs[s];
    if (sq.n < 1) throw InvalidArgument("[llama] forward: no tokens");
    const int n_past = sq.cache->n_tokens();
    if (static_cast<int64_t>(n_past) + sq.n > sq.cache->config().n_ctx) {
      throw InvalidArgument("[llama] forward: " + std::to_string(n_past) + " cached + " + std::to_string(sq.n) +
                            " new tokens exceed n_ctx = " + std::to_string(sq.cache->config().n_ctx));
    }
    n64 += sq.n;
  }
  if (n64 > (int64_t{1} << 30)) throw InvalidArgument("[llama] forward: too many rows in one call");
  const int n = static_cast<int>(n64);
  const int64_t E = hp.n_embd, Q = int64_t{hp.n_head} * hp.head_dim, KV = int64_t{hp.n_head_kv} * hp.head_dim,
                F = hp.n_ff;
  float* x = need(ws.x, n * E);        // [n, n_embd] residual stream (the sequences' rows in order)
  float* xn = need(ws.xn, n * E);      // [n, n_embd] normed input / projection output
  float* q = need(ws.q, n * Q);        // [n, n_head, head_dim]
  float* k = need(ws.k, n * KV);       // [n, n_head_kv, head_dim]
  float* v = need(ws.v, n * KV);       // [n, n_head_kv, head_dim]
  float* attn = need(ws.attn, n * Q);  // [n, n_head, head_dim]
  float* gate = need(ws.gate, n * F);  // [n, n_ff]
  float* up = need(ws.up, n * F);      // [n, n_ff]
  int32_t* pos = need(ws.pos, n);      // [n] position of each row in its own sequence
  for (int s = 0, r = 0; s < n_seqs; ++s) {
    const int n_past = seqs[s].cache->n_tokens();
    for (int i = 0; i < seqs[s].n; ++i) pos[r++] = n_past + i;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));

  // debug hook: dump a named intermediate [rows, cols]
  auto dump = [&](const char* name, int il, const float* data, int64_t rows, int64_t cols) {
    if (ws.hook) ws.hook(name, il, data, rows, cols);
  };

  // input rows: token embeddings (runs of token rows at once) or the embedding rows as given
  for (int s = 0, r0 = 0; s < n_seqs; r0 += seqs[s].n, ++s) {
    const LlamaInput& in = seqs[s].in;
    float* xs = x + int64_t{r0} * E;
    const int ns = seqs[s].n;
    if (!in.embd_index) {
      ops::get_rows(tok_embd_, in.ids, ns, xs);  // throws InvalidArgument for an id out of range
      continue;
    }
    for (int i = 0; i < ns;) {
      if (in.embd_index[i] >= 0) {
        std::memcpy(xs + i * E, in.embd + static_cast<int64_t>(in.embd_index[i]) * E, sizeof(float) * E);
        ++i;
        continue;
      }
      int j = i + 1;
      while (j < ns && in.embd_index[j] < 0) ++j;
      ops::get_rows(tok_embd_, in.ids + i, j - i, xs + i * E);
      i = j;
    }
  }
  dump("embd", -1, x, n, E);
  // Row offsets, and the one-row sequences whose attention runs side by side (two or more of
  // them, on distinct caches, with threads to share).
  std::vector<int>& row0 = ws.row0;
  std::vector<int>& decode_seqs = ws.decode_seqs;
  row0.assign(static_cast<size_t>(n_seqs), 0);
  decode_seqs.clear();
  for (int s = 0, r = 0; s < n_seqs; r += seqs[s].n, ++s) {
    row0[s] = r;
    if (seqs[s].n == 1) decode_seqs.push_back(s);
  }
  bool distinct = true;
  for (size_t i = 0; distinct && i < decode_seqs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) distinct = distinct && seqs[decode_seqs[i]].cache != seqs[decode_seqs[j]].cache;
  }
  if (decode_seqs.size() < 2 || pool.size() < 2 || !distinct) decode_seqs.clear();
  // Whole rounds only: a remainder (3 sequences on 2 threads) would leave threads idle while the
  // last ones run alone, so those attend like the longer sequences, with the whole pool.
  decode_seqs.resize(decode_seqs.size() - decode_seqs.size() % static_cast<size_t>(pool.size()));
  // Dispatched longest cache first (the pool hands out tasks in order), so that a long sequence
  // does not start last and run alone while the other threads wait.
  std::vector<int>& decode_order = ws.decode_order;
  decode_order = decode_seqs;
  std::stable_sort(decode_order.begin(), decode_order.end(),
                   [&](int a, int b) { return seqs[a].cache->n_tokens() > seqs[b].cache->n_tokens(); });
  while (!decode_seqs.empty() && ws.serial.size() < static_cast<size_t>(pool.size())) {
    ws.serial.push_back(std::make_unique<cpu::ThreadPool>(1));
  }
  for (int il = 0; il < hp.n_layer; ++il) {
    const LlamaLayer& L = layers_[il];
    // attention block
    for (int s = 0, r0 = 0; s < n_seqs; r0 += seqs[s].n, ++s) {  // layer input, before attn_norm (pivots)
      seqs[s].cache->observe(il, x + int64_t{r0} * E, seqs[s].n, static_cast<int>(E));
    }
    ops::rms_norm(x, static_cast<const float*>(L.attn_norm.data), n, E, hp.rms_eps, xn);
    dump("attn_norm", il, xn, n, E);
    ops::matmul_group({{&L.wq, q}, {&L.wk, k}, {&L.wv, v}}, xn, n, pool);
    add_bias(q, L.bq, n, Q);  // qkv bias (qwen2; llama files with attention_bias)
    add_bias(k, L.bk, n, KV);
    add_bias(v, L.bv, n, KV);
    ops::rope(q, n, hp.n_head, hp.head_dim, hp.n_rot, pos, hp.rope_theta, hp.rope_mode, rope_scaling());
    ops::rope(k, n, hp.n_head_kv, hp.head_dim, hp.n_rot, pos, hp.rope_theta, hp.rope_mode, rope_scaling());
    dump("q", il, q, n, Q);
    dump("k", il, k, n, KV);
    dump("v", il, v, n, KV);
    // each sequence over its own cache; the one-row sequences of a batched decode step side by
    // side, one task each over a one-thread pool (a row's arithmetic is the same either way)
    const auto attend = [&](int s, cpu::ThreadPool& p) {
      kv::KvCache& cache = *seqs[s].cache;
      const int r0 = row0[s];
      cache.append(il, k + r0 * KV, v + r0 * KV, seqs[s].n);
      cache.attend(il, q + r0 * Q, seqs[s].n, hp.n_head, scale, attn + r0 * Q, p);
    };
    if (!decode_seqs.empty()) {
      pool.run(static_cast<int>(decode_order.size()), [&](int i, int thread) { attend(decode_order[i], *ws.serial[thread]); });
    }
    for (int s = 0; s < n_seqs; ++s) {  // the rest (decode_seqs is in ascending order)
      if (!std::binary_search(decode_seqs.begin(), decode_seqs.end(), s)) attend(s, pool);
    }
    dump("attn", il, attn, n, Q);
    ops::matmul(L.wo, attn, n, xn, pool);  // xn: attention output [n, n_embd]
    add_bias(xn, L.bo, n, E);
    dump("attn_out", il, xn, n, E);
    ops::add_inplace(x, xn, n * E);
    // MLP block
    ops::rms_norm(x, static_cast<const float*>(L.ffn_norm.data), n, E, hp.rms_eps, xn);
    dump("ffn_norm", il, xn, n, E);
    ops::matmul_group({{&L.w_gate, gate}, {&L.w_up, up}}, xn, n, pool);
    add_bias(gate, L.b_gate, n, F);  // mlp_bias (llama files)
    add_bias(up, L.b_up, n, F);
    ops::swiglu(gate, up, gate, n * F);
    dump("ffn_swiglu", il, gate, n, F);
    ops::matmul(L.w_down, gate, n, xn, pool);  // xn: MLP output [n, n_embd]
    add_bias(xn, L.b_down, n, E);
    dump("ffn_out", il, xn, n, E);
    ops::add_inplace(x, xn, n * E);
    dump("l_out", il, x, n, E);
  }

  // output: only the rows asked for, gathered [n_out, n_embd] for one projection
  int n_out = 0, n_outputs = 0;
  for (int s = 0; s < n_seqs; ++s) {
    if (seqs[s].logits) n_out += seqs[s].all_logits ? seqs[s].n : 1, ++n_outputs;
  }
  if (n_out == 0) return;
  const int64_t nv = hp.n_vocab;
  float* xo = need(ws.xo, n_out * E);
  for (int s = 0, r0 = 0, o = 0; s < n_seqs; r0 += seqs[s].n, ++s) {
    if (!seqs[s].logits) continue;
    const int rows = seqs[s].all_logits ? seqs[s].n : 1;
    std::memcpy(xo + int64_t{o} * E, x + (int64_t{r0} + seqs[s].n - rows) * E, sizeof(float) * rows * E);
    o += rows;
  }
  ops::rms_norm(xo, static_cast<const float*>(out_norm_.data), n_out, E, hp.rms_eps, xn);
  dump("out_norm", -1, xn, n_out, E);
  if (n_outputs == 1) {  // straight into the caller's buffer
    const LlamaSeq* sq = seqs;
    while (!sq->logits) ++sq;
    ops::matmul(output_, xn, n_out, sq->logits, pool);
    dump("logits", -1, sq->logits, n_out, nv);
    return;
  }
  float* lo = need(ws.lo, n_out * nv);
  ops::matmul(output_, xn, n_out, lo, pool);
  dump("logits", -1, lo, n_out, nv);
  for (int s = 0, o = 0; s < n_seqs; ++s) {
    if (!seqs[s].logits) continue;
    const int rows = seqs[s].all_logits ? seqs[s].n : 1;
    std::memcpy(seqs[s].logits, lo + int64_t{o} * nv, sizeof(float) * rows * nv);
    o += rows;
  }
}

}  // namespace akvq::models
