// Llama graph loader: per-arch conventions, hyperparameters from `<arch>.*` keys and the validated
// weight table.
#include <cmath>
#include <string>
#include <unordered_set>

#include "akvq/error.h"
#include "gguf/gguf.h"
#include "models/llama.h"
#include "models/weights.h"

namespace akvq::models {

namespace {

// The archs that run on the llama graph and how they differ.
constexpr LlamaArch kArchs[] = {
    // llama.cpp's converter permutes the Q/K rows of `llama` files so that RoPE rotates pairs.
    {"llama", ops::RopeMode::AdjacentPairs, false},
    // Qwen2: Q/K rows as in Hugging Face (rotate_half), biases on Q, K and V.
    {"qwen2", ops::RopeMode::HalfSplit, true},
};

constexpr int64_t kMaxDim = 1 << 20;  // sanity bound on every size read from the file

[[noreturn]] void fail(const std::string& msg) {
  throw FormatError("[llama] " + msg);
}

int get_dim(const gguf::File& f, const std::string& key, int64_t lo, int64_t hi) {
  const uint32_t v = f.get_u32(key);
  if (v < lo || v > hi) {
    fail("key '" + key + "' = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
         std::to_string(hi) + "]");
  }
  return static_cast<int>(v);
}

}  // namespace

const LlamaArch* find_llama_arch(const std::string& name) {
  for (const LlamaArch& a : kArchs) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

Llama::Llama(const gguf::File& f, int act_bits) {
  LlamaHparams& hp = hp_;
  hp.arch = f.get_str("general.architecture");
  const LlamaArch* arch = find_llama_arch(hp.arch);
  if (!arch) {
    std::string names;
    for (const LlamaArch& x : kArchs) names += (names.empty() ? "" : ", ") + std::string(x.name);
    fail("unsupported architecture '" + hp.arch + "' (supported: " + names + ")");
  }
  hp.rope_mode = arch->rope_mode;
  hp.qkv_bias = arch->qkv_bias;
  const std::string a = hp.arch + ".";
  hp.n_embd = get_dim(f, a + "embedding_length", 1, kMaxDim);
  hp.n_layer = get_dim(f, a + "block_count", 1, 4096);
  hp.n_ff = get_dim(f, a + "feed_forward_length", 1, kMaxDim);
  hp.n_head = get_dim(f, a + "attention.head_count", 1, 4096);
  hp.n_head_kv =
      f.has(a + "attention.head_count_kv") ? get_dim(f, a + "attention.head_count_kv", 1, hp.n_head) : hp.n_head;
  hp.n_ctx_train = f.has(a + "context_length") ? get_dim(f, a + "context_length", 1, 1 << 24) : 0;
  if (hp.n_head % hp.n_head_kv != 0) {
    fail("attention.head_count " + std::to_string(hp.n_head) + " is not a multiple of attention.head_count_kv " +
         std::to_string(hp.n_head_kv));
  }
  if (f.has(a + "attention.key_length")) {
    hp.head_dim = get_dim(f, a + "attention.key_length", 2, 4096);
    if (f.has(a + "attention.value_length") && get_dim(f, a + "attention.value_length", 2, 4096) != hp.head_dim) {
      fail("attention.value_length differs from attention.key_length (unsupported)");
    }
  } else {
    if (hp.n_embd % hp.n_head != 0) {
      fail("embedding_length " + std::to_string(hp.n_embd) + " is not a multiple of head_count " +
           std::to_string(hp.n_head));
    }
    hp.head_dim = hp.n_embd / hp.n_head;
  }
  hp.n_rot = f.has(a + "rope.dimension_count") ? get_dim(f, a + "rope.dimension_count", 2, hp.head_dim) : hp.head_dim;
  if (hp.n_rot % 2 != 0) fail("rope.dimension_count " + std::to_string(hp.n_rot) + " is odd");
  hp.rope_theta = f.get_f32(a + "rope.freq_base", 10000.0f);
  hp.rms_eps = f.get_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  if (!(hp.rope_theta > 1.0f) || !std::isfinite(hp.rope_theta)) {
    fail("rope.freq_base = " + std::to_string(hp.rope_theta) + " is out of range (a finite number > 1)");
  }
  // RoPE context extension, llama.cpp's keys: "linear" divides the positions by rope.scaling.factor
  // (or the older rope.scale_linear); Llama 3 files carry per-pair divisors in rope_freqs.weight
  // (below). YaRN and LongRoPE also change the attention scale: refused, not run as plain RoPE.
  const std::string rope_type = f.has(a + "rope.scaling.type") ? f.get_str(a + "rope.scaling.type") : "none";
  if (rope_type != "none" && rope_type != "linear") {
    fail("rope.scaling.type '" + rope_type + "' is not supported (supported: none, linear)");
  }
  const std::string factor_key = f.has(a + "rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear";
  const float factor = f.has(a + factor_key) ? f.get_f32(a + factor_key, 0.0f) : 0.0f;
  if (factor != 0.0f) {  // 0: not set (llama.cpp)
    if (!(factor > 0.0f) || !std::isfinite(factor)) {
      fail(factor_key + " = " + std::to_string(factor) + " is out of range (a finite number > 0)");
    }
    hp.rope_freq_scale = 1.0f / factor;
  }
  if (!(hp.rms_eps > 0.0f && hp.rms_eps < 1.0f)) {
    fail("attention.layer_norm_rms_epsilon = " + std::to_string(hp.rms_eps) + " is out of range (0 < eps < 1)");
  }

  const TensorView* te = f.find_tensor("token_embd.weight");
  if (!te) fail("tensor 'token_embd.weight' is missing");
  if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (int64_t{1} << 24)) {
    fail("tensor 'token_embd.weight' must be 2-D with 1..2^24 rows");
  }
  hp.n_vocab = static_cast<int>(te->ne[1]);
  if (f.has(a + "vocab_size") && f.get_i64(a + "vocab_size", 0) != hp.n_vocab) {
    fail("vocab_size = " + std::to_string(f.get_i64(a + "vocab_size", 0)) + " but tensor 'token_embd.weight' has " +
         std::to_string(hp.n_vocab) + " rows");
  }

  if (f.has(a + "expert_count") && f.get_u32(a + "expert_count") > 0) {  // llama.cpp writes Mixtral as llama
    fail("expert_count = " + std::to_string(f.get_u32(a + "expert_count")) +
         ": mixture-of-experts models are not supported");
  }
  const int64_t E = hp.n_embd, Q = int64_t{hp.n_head} * hp.head_dim, KV = int64_t{hp.n_head_kv} * hp.head_dim,
                F = hp.n_ff, V = hp.n_vocab;
  // Every tensor of the file is either bound here or the vision tower's (v.*, mm.*; models/clip):
  // a tensor left over is a part of the model this graph would not compute, so the file is refused.
  std::unordered_set<std::string> used;
  auto bind = [&](const gguf::File& file, const std::string& name, std::initializer_list<int64_t> ne, bool norm) {
    used.insert(name);
    TensorView t = bind_tensor(file, "[llama]", name, ne, norm, /*load_only_ok=*/!norm);
    if (dtype_info(t.type).load_only) {  // llama.cpp's Q4_K_M / Q4_K_S files hold some of these
      converted_.emplace_back();
      requantize_q8_0(t, converted_.back());
    }
    return t;
  };
  auto bias = [&](const std::string& name, int64_t n) {  // optional
    return f.find_tensor(name) ? bind(f, name, {n}, true) : TensorView{};
  };
  tok_embd_ = bind(f, "token_embd.weight", {E, V}, false);
  out_norm_ = bind(f, "output_norm.weight", {E}, true);
  if (f.find_tensor("rope_freqs.weight")) {
    rope_freqs_ = bind(f, "rope_freqs.weight", {hp.n_rot / 2}, true);
    const float* r = static_cast<const float*>(rope_freqs_.data);
    for (int i = 0; i < hp.n_rot / 2; ++i) {
      if (!(r[i] > 0.0f) || !std::isfinite(r[i])) {
        fail("tensor 'rope_freqs.weight' holds " + std::to_string(r[i]) + " at " + std::to_string(i) +
             " (the divisors must be finite and > 0)");
      }
    }
  }
  output_ = f.find_tensor("output.weight") ? bind(f, "output.weight", {E, V}, false) : tok_embd_;
  layers_.resize(hp.n_layer);
  for (int il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LlamaLayer& L = layers_[il];
    L.attn_norm = bind(f, p + "attn_norm.weight", {E}, true);
    L.wq = bind(f, p + "attn_q.weight", {E, Q}, false);
    L.wk = bind(f, p + "attn_k.weight", {E, KV}, false);
    L.wv = bind(f, p + "attn_v.weight", {E, KV}, false);
    if (hp.qkv_bias) {  // required
      L.bq = bind(f, p + "attn_q.bias", {Q}, true);
      L.bk = bind(f, p + "attn_k.bias", {KV}, true);
      L.bv = bind(f, p + "attn_v.bias", {KV}, true);
    } else {
      L.bq = bias(p + "attn_q.bias", Q), L.bk = bias(p + "attn_k.bias", KV), L.bv = bias(p + "attn_v.bias", KV);
    }
    L.wo = bind(f, p + "attn_output.weight", {Q, E}, false);
    L.bo = bias(p + "attn_output.bias", E);
    L.ffn_norm = bind(f, p + "ffn_norm.weight", {E}, true);
    L.w_gate = bind(f, p + "ffn_gate.weight", {E, F}, false);
    L.w_up = bind(f, p + "ffn_up.weight", {E, F}, false);
    L.w_down = bind(f, p + "ffn_down.weight", {F, E}, false);
    L.b_gate = bias(p + "ffn_gate.bias", F), L.b_up = bias(p + "ffn_up.bias", F);
    L.b_down = bias(p + "ffn_down.bias", E);
  }
  for (const TensorView& t : f.tensors()) {
    if (used.count(t.name) || t.name.rfind("v.", 0) == 0 || t.name.rfind("mm.", 0) == 0) continue;
    fail("tensor '" + t.name + "' is not part of the " + hp.arch +
         " graph this engine runs (a feature of the model it does not support)");
  }
  for (LlamaLayer& L : layers_) {
    for (TensorView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
      w->act_bits = static_cast<uint8_t>(act_bits);
      if (packed_.pack(*w)) f.release_pages(w->data, w->nbytes);  // only the packed copy is read
    }
  }
  output_.act_bits = static_cast<uint8_t>(act_bits);
  if (packed_.pack(output_) && output_.data != tok_embd_.data) f.release_pages(output_.data, output_.nbytes);
}

kv::KvConfig Llama::kv_config(int n_ctx, const std::string& mode) const {
  kv::KvConfig c;
  c.mode = mode;
  c.n_layer = hp_.n_layer;
  c.n_head_kv = hp_.n_head_kv;
  c.head_dim = hp_.head_dim;
  c.n_ctx = n_ctx;
  return c;
}

}  // namespace akvq::models
