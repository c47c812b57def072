// The KV cache component. Models talk to it only through append / attend / stats; the storage
// layout is hidden. `f16` is the first storage mode; the AKVQ modes (2/4-bit after a WHT
// rotation) plug in behind the same interface.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "akvq/engine.h"
#include "cpu/thread_pool.h"

namespace akvq::kv {

struct KvConfig {
  std::string mode = "f16";
  int n_layer = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ctx = 0;  // capacity in tokens
  // Raw kv options ("key" -> "value"), validated per mode by kv_options.h (resolve_kv_options).
  std::map<std::string, std::string> options;
  // TSA layers stored in the model file (`akvq.tsa_layers`), used when has_file_tsa and the
  // `tsa_layers` option is absent; otherwise the default {0, 1}.
  bool has_file_tsa = false;
  std::vector<int> file_tsa_layers;
  void validate() const;  // throws InvalidArgument naming the bad field / unknown mode
};

struct KvStats {
  int64_t n_tokens = 0;
  int64_t bytes = 0;           // bytes used by cached K and V (all layers)
  int64_t bytes_reserved = 0;  // bytes allocated
  double bits_per_element = 0;
};

class KvCache {
 public:
  static std::unique_ptr<KvCache> create(const KvConfig& cfg);
  virtual ~KvCache() = default;

  const KvConfig& config() const { return cfg_; }
  // Tokens stored in `layer` (all layers agree between forward passes).
  virtual int n_tokens(int layer = 0) const = 0;
  // Drops everything (n_tokens becomes 0).
  virtual void clear() = 0;
  // Keeps the first n tokens of every layer (n <= n_tokens()).
  virtual void truncate(int n) = 0;
  // The largest n' <= n (n <= n_tokens()) for which truncate(n') leaves exactly the state that
  // appending tokens [0, n') to an empty cache gives. Default (caches that store every token
  // once, as it arrived): n.
  virtual int restorable(int n) const { return n; }
  // Marks the current length c = n_tokens() as a reuse point: afterwards restorable(n) >= c for
  // every n >= c (while the tokens before c stay), and truncate(c) restores exactly the state at c.
  // Callers mark where a later prompt is likely to diverge (Sequence::checkpoint_position). One
  // point at a time: a new one replaces the last. Default: nothing to do (every n is restorable).
  virtual void checkpoint() {}

  // Appends n_new tokens to `layer`; k, v: [n_new, n_head_kv, head_dim] (k already RoPE'd).
  // Throws InvalidArgument when the cache would exceed n_ctx.
  virtual void append(int layer, const float* k, const float* v, int n_new) = 0;

  // Causal attention of the last n_q tokens of `layer` (already appended) over the cache.
  // Batch-invariant: a query's output is bit for bit the same whatever n_q and the earlier
  // split of the tokens into appends (no split-K whose boundaries depend on the batch).
  // q: [n_q, n_head, head_dim], n_head a multiple of n_head_kv (GQA: head h uses kv head
  // h / (n_head / n_head_kv)). Query i sees cached tokens [0, n_tokens - n_q + i].
  // out: [n_q, n_head, head_dim]. scale multiplies q·k before the softmax.
  virtual void attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                      cpu::ThreadPool& pool) const = 0;

  virtual KvStats stats() const = 0;
  // An upper bound of stats().bytes once n_tokens tokens are stored, whatever their kinds and
  // values (every token priced at the most expensive store it may occupy): what a memory budget
  // reserves for one sequence of n_tokens (n_tokens >= 0).
  virtual int64_t bytes_bound(int n_tokens) const = 0;
  // Per-layer, per-precision-class accounting, pivots, resolved options (the public summary).
  // Default: one class "fp16" per layer holding every token.
  virtual KvSummary summary() const;

  // Saliency hooks for the AKVQ modes (no-ops by default).
  // The layer's input hidden state x [n, n_embd] for the next n tokens of `layer` (positions
  // n_tokens(layer) ...), given BEFORE that layer's append (pivot detection).
  virtual void observe(int layer, const float* x, int n, int n_embd) { (void)layer, (void)x, (void)n, (void)n_embd; }
  // The same from the per-token max|x| of those rows, amax[n] (what observe() reduces x to; a
  // backend that holds x elsewhere computes it there).
  virtual void observe_amax(int layer, const float* amax, int n) { (void)layer, (void)amax, (void)n; }
  // Whether observe()/observe_amax() are used at all (pivot detection on): callers may skip them.
  virtual bool wants_observe() const { return false; }
  // Kinds of the next n tokens to be appended (positions n_tokens(0) ...); tokens without a
  // kind are Text.
  virtual void set_kinds(const TokenKind* kinds, int n) { (void)kinds, (void)n; }

 protected:
  explicit KvCache(const KvConfig& cfg) : cfg_(cfg) {}
  KvConfig cfg_;
};

}  // namespace akvq::kv
