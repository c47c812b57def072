// Llama-architecture decoder: RMSNorm, RoPE, GQA attention through the KV cache, SwiGLU MLP,
// optional tied output embedding. f32 activations, matmuls directly on the quantized weights of
// the memory-mapped file. The archs that share this graph differ only by a few conventions
// (LlamaArch): `llama` (llama.cpp permutes Q/K rows, so RoPE rotates adjacent pairs) and `qwen2`
// (Q/K rows as in Hugging Face, half-split RoPE, biases on the Q/K/V projections).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "ops/ops.h"
#include "ops/pack.h"

namespace akvq {
namespace gguf {
class File;
}

namespace models {

struct LlamaHparams {
  std::string arch;  // general.architecture
  int n_vocab = 0;
  int n_ctx_train = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;  // n_embd / n_head unless the file says otherwise
  int n_ff = 0;
  int n_rot = 0;  // rope.dimension_count (default head_dim)
  float rope_theta = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor (rope.scaling.type linear), else 1
  float rms_eps = 1e-5f;
  ops::RopeMode rope_mode = ops::RopeMode::AdjacentPairs;
  bool qkv_bias = false;  // blk.N.attn_{q,k,v}.bias present (qwen2)
};

// Per-architecture conventions of the llama graph (one row per supported `general.architecture`).
struct LlamaArch {
  const char* name;         // general.architecture, also the prefix of the hyperparameter keys
  ops::RopeMode rope_mode;  // how RoPE pairs the dimensions of a head
  bool qkv_bias;            // attn_q/attn_k/attn_v carry a bias [n_out] (F32)
};

// The supported archs; nullptr for an unknown name.
const LlamaArch* find_llama_arch(const std::string& name);

struct LlamaLayer {
  TensorView attn_norm;  // [n_embd]
  TensorView wq;         // ne {n_embd, n_head*head_dim}
  TensorView wk;         // ne {n_embd, n_head_kv*head_dim}
  TensorView wv;         // ne {n_embd, n_head_kv*head_dim}
  // Biases, F32 (data == nullptr when the file has none): q/k/v always in qwen2 files; any of
  // them in llama files (llama.cpp writes HF's attention_bias / mlp_bias as these tensors).
  TensorView bq;         // [n_head*head_dim]
  TensorView bk;         // [n_head_kv*head_dim]
  TensorView bv;         // [n_head_kv*head_dim]
  TensorView wo;         // ne {n_head*head_dim, n_embd}
  TensorView bo;         // [n_embd]
  TensorView ffn_norm;   // [n_embd]
  TensorView w_gate;     // ne {n_embd, n_ff}
  TensorView w_up;       // ne {n_embd, n_ff}
  TensorView w_down;     // ne {n_ff, n_embd}
  TensorView b_gate;     // [n_ff]
  TensorView b_up;       // [n_ff]
  TensorView b_down;     // [n_embd]
};

// Scratch buffers for one forward chunk, grown on demand (no allocation in steady state).
struct LlamaWorkspace {
  std::vector<float> x, xn, q, k, v, attn, gate, up, xo, lo;
  std::vector<int32_t> pos;
  std::vector<int> row0, decode_seqs;                     // forward_batch: per-sequence row offsets
  std::vector<int> decode_order;                          // forward_batch: decode_seqs, longest cache first
  std::vector<std::unique_ptr<cpu::ThreadPool>> serial;  // one-thread pools, one per pool thread
  // Optional debug hook, called after each named step with the intermediate
  // data [rows, cols] (e.g. "attn_norm", "q", "k", "v", "attn", "attn_out", "ffn_norm",
  // "ffn_swiglu", "ffn_out", "l_out", layer -1 for "embd"/"out_norm"/"logits").
  std::function<void(const char* name, int layer, const float* data, int64_t rows, int64_t cols)> hook;
};

// The rows of one forward call: token ids and/or embedding rows given directly (image features).
struct LlamaInput {
  const int32_t* ids = nullptr;         // [n] token ids (read for token rows only)
  const int32_t* embd_index = nullptr;  // [n] row of embd for an embedding row, < 0 for a token row;
                                        // nullptr: every row is a token
  const float* embd = nullptr;          // [n_rows, n_embd] embedding rows
};

// One sequence of a batched forward call: its rows, appended to its own cache at positions
// cache->n_tokens() ..., and where its logits go.
struct LlamaSeq {
  LlamaInput in;
  int n = 0;                     // rows (>= 1)
  kv::KvCache* cache = nullptr;  // this sequence's KV cache
  float* logits = nullptr;       // [n, n_vocab] when all_logits, else [1, n_vocab] for the last row;
  bool all_logits = false;       // nullptr: no output projection for this sequence
};

class Llama {
 public:
  // Binds the tensors of f (which must outlive this object) and validates every shape and type.
  // Throws FormatError naming the tensor or key at fault.
  // act_bits: the activation precision of every matmul weight (TensorView::act_bits, 8 or 16).
  explicit Llama(const gguf::File& f, int act_bits = 16);
  size_t packed_bytes() const { return packed_.bytes(); }  // weights repacked at load

  const LlamaHparams& hparams() const { return hp_; }
  // The bound weights (views into the file), for other backends that upload them.
  const TensorView& tok_embd() const { return tok_embd_; }
  const TensorView& out_norm() const { return out_norm_; }
  const TensorView& output() const { return output_; }
  const TensorView& rope_freqs() const { return rope_freqs_; }  // [n_rot/2] F32, or data == nullptr
  ops::RopeScaling rope_scaling() const {
    return {hp_.rope_freq_scale, static_cast<const float*>(rope_freqs_.data)};
  }
  const std::vector<LlamaLayer>& layers() const { return layers_; }
  kv::KvConfig kv_config(int n_ctx, const std::string& mode) const;

  // Runs ids[n] at positions cache.n_tokens() ... + n - 1, appending their K/V to the cache.
  // logits: [n, n_vocab] when all_logits, else [1, n_vocab] for the last token (may be nullptr
  // to skip the output projection).
  void forward(const int32_t* ids, int n, kv::KvCache& cache, LlamaWorkspace& ws, cpu::ThreadPool& pool, float* logits,
               bool all_logits) const;
  // Same for mixed rows: row i is the embedding of token in.ids[i], or the embedding row
  // in.embd[in.embd_index[i]] itself. A row's result does not depend on the other rows' kind.
  void forward(const LlamaInput& in, int n, kv::KvCache& cache, LlamaWorkspace& ws, cpu::ThreadPool& pool,
               float* logits, bool all_logits) const;
  // Several sequences in one pass (batched decoding, continuous batching): the rows of every
  // sequence go through each matmul together (each weight is read once per call), attention
  // runs per sequence over its own cache. A row's result is bit for bit what forward() gives
  // it alone (the matmuls and the caches are batch-invariant). Throws InvalidArgument before
  // touching anything when a sequence has no rows or would exceed its cache's n_ctx; on a
  // later failure the caches hold a partial step (callers truncate them back).
  void forward_batch(const LlamaSeq* seqs, int n_seqs, LlamaWorkspace& ws, cpu::ThreadPool& pool) const;

 private:
  LlamaHparams hp_;
  TensorView tok_embd_;  // ne {n_embd, n_vocab}
  TensorView out_norm_;  // [n_embd]
  std::vector<std::vector<uint8_t>> converted_;  // load-only weight types requantized to Q8_0
  TensorView rope_freqs_;  // [n_rot/2] F32 divisors of the RoPE frequencies (Llama 3 files), optional
  TensorView output_;    // ne {n_embd, n_vocab} (tok_embd_ when tied)
  std::vector<LlamaLayer> layers_;
  ops::PackedWeights packed_;  // matmul weights repacked for the active kernels (ops/pack.h)
};

}  // namespace models
}  // namespace akvq
