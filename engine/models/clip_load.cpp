// CLIP vision tower loader: `clip.vision.*` hyperparameters, our `akvq.vision.*` keys, the `v.*`
// weight table and the legacy quirks of published llama.cpp mmproj files.
#include <algorithm>
#include <string>

#include "akvq/error.h"
#include "gguf/gguf.h"
#include "models/clip.h"
#include "models/weights.h"

namespace akvq::models {

namespace {

const std::string kTag = "[clip]";
constexpr int64_t kMaxDim = 1 << 20;

[[noreturn]] void fail(const gguf::File& f, const std::string& msg) {
  throw FormatError(kTag + " " + f.path() + ": " + msg);
}

int get_dim(const gguf::File& f, const std::string& key, int64_t lo, int64_t hi) {
  if (!f.has(key)) fail(f, "key '" + key + "' is missing");
  const uint32_t v = f.get_u32(key);
  if (v < lo || v > hi) {
    fail(f, "key '" + key + "' = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
  }
  return static_cast<int>(v);
}

std::array<float, 3> get_rgb(const gguf::File& f, const std::string& key, std::array<float, 3> def, bool positive) {
  if (!f.has(key)) return def;
  const std::vector<float> v = f.get_f32_array(key);
  if (v.size() != 3) fail(f, "key '" + key + "' has " + std::to_string(v.size()) + " values, expected 3");
  for (float x : v) {
    if (!(x == x) || (positive && !(x > 0.0f))) fail(f, "key '" + key + "' has a bad value " + std::to_string(x));
  }
  return {v[0], v[1], v[2]};
}

// Resolves the feature layer(s) to indices in [0, n_layer] (see clip_keys::kFeatureLayer).
std::vector<int> resolve_feature_layers(const gguf::File& f, int n_layer) {
  auto check = [&](const std::string& key, int64_t idx, bool allow_negative) {
    const int64_t lo = allow_negative ? -(int64_t{n_layer} + 1) : 0;
    if (idx < lo || idx > n_layer) {
      fail(f, "key '" + key + "' = " + std::to_string(idx) + " is out of range [" + std::to_string(lo) + ", " +
                  std::to_string(n_layer) + "] for " + std::to_string(n_layer) + " stored blocks");
    }
    return static_cast<int>(idx < 0 ? n_layer + 1 + idx : idx);
  };
  for (const char* name : clip_keys::kFeatureLayer) {
    const std::string key = name;
    const gguf::Value* v = f.find(key);
    if (!v) continue;
    if (v->type != gguf::ValueType::ARRAY) return {check(key, f.get_i64(key, 0), true)};
    const std::vector<int32_t> layers = f.get_i32_array(key);  // llama.cpp: non-negative indices
    if (layers.empty() || layers.size() > 64) {
      fail(f, "key '" + key + "' lists " + std::to_string(layers.size()) + " feature layers (1 to 64)");
    }
    std::vector<int> out;
    for (int32_t l : layers) out.push_back(check(key, l, false));
    return out;
  }
  // llama.cpp's reading of LLaVA files: the unused last block(s) are not stored, the feature is
  // the output of the last stored block.
  return {n_layer};
}

}  // namespace

const char* clip_key(const gguf::File& f, const char* const (&names)[2]) {
  return f.has(names[0]) || !f.has(names[1]) ? names[0] : names[1];
}

Clip::Clip(const gguf::File& f) {
  ClipHparams& hp = hp_;
  if (!f.get_bool("clip.has_vision_encoder", true)) {
    throw Unavailable(kTag + " " + f.path() + ": the file has no vision encoder (clip.has_vision_encoder = false)");
  }
  if (!f.find_tensor("v.patch_embd.weight")) {
    throw Unavailable(kTag + " " + f.path() +
                      ": the file has no vision encoder (tensor 'v.patch_embd.weight' is missing)");
  }
  hp.image_size = get_dim(f, "clip.vision.image_size", 1, 1 << 14);
  hp.patch_size = get_dim(f, "clip.vision.patch_size", 1, 1 << 10);
  if (hp.image_size % hp.patch_size != 0) {
    fail(f, "image_size " + std::to_string(hp.image_size) + " is not a multiple of patch_size " +
                std::to_string(hp.patch_size));
  }
  hp.n_embd = get_dim(f, "clip.vision.embedding_length", 1, kMaxDim);
  hp.n_ff = get_dim(f, "clip.vision.feed_forward_length", 1, kMaxDim);
  hp.n_layer = get_dim(f, "clip.vision.block_count", 0, 4096);
  hp.n_head = get_dim(f, "clip.vision.attention.head_count", 1, 4096);
  if (hp.n_embd % hp.n_head != 0) {
    fail(f, "embedding_length " + std::to_string(hp.n_embd) + " is not a multiple of attention.head_count " +
                std::to_string(hp.n_head));
  }
  hp.head_dim = hp.n_embd / hp.n_head;
  hp.eps = f.get_f32("clip.vision.attention.layer_norm_epsilon", 1e-5f);
  if (!(hp.eps > 0.0f && hp.eps < 1.0f)) fail(f, "attention.layer_norm_epsilon out of range");
  hp.act = f.get_bool("clip.use_gelu", false) ? ops::Activation::Gelu : ops::Activation::QuickGelu;
  if (f.has("akvq.vision.hidden_act")) {  // transformers' name (our converter)
    const std::string name = f.get_str("akvq.vision.hidden_act");
    if (!ops::activation_from_name(name.c_str(), &hp.act)) {
      throw FormatError(kTag + " " + f.path() + ": vision activation 'akvq.vision.hidden_act' = '" + name +
                        "' is not supported (gelu, gelu_pytorch_tanh, quick_gelu, silu, relu)");
    }
  }
  if (f.get_bool("clip.use_silu", false)) {
    throw FormatError(kTag + " " + f.path() + ": clip.use_silu (SiLU MLP) is not supported");
  }
  // OpenAI CLIP's normalization when the file does not say (llama.cpp files always do).
  hp.image_mean = get_rgb(f, "clip.vision.image_mean", {0.48145466f, 0.4578275f, 0.40821073f}, false);
  hp.image_std = get_rgb(f, "clip.vision.image_std", {0.26862954f, 0.26130258f, 0.27577711f}, true);
  hp.feature_layers = resolve_feature_layers(f, hp.n_layer);
  hp.feature_layer = *std::max_element(hp.feature_layers.begin(), hp.feature_layers.end());
  const char* skey = clip_key(f, clip_keys::kSelectStrategy);
  const std::string strategy = f.get_str(skey, "default");
  if (strategy == "default") {
    hp.select = ClipSelect::Default;
  } else if (strategy == "full") {
    hp.select = ClipSelect::Full;
  } else {
    fail(f, "key '" + std::string(skey) + "' = '" + strategy + "' (expected 'default' or 'full')");
  }

  const int64_t E = hp.n_embd, F = hp.n_ff, P = hp.patch_size;
  // patch embedding: conv weight [n_embd, 3, P, P] (ne {P, P, 3, n_embd}) read as a matmul weight
  // over patches flattened (channel, row, column).
  patch_w_ = bind_tensor(f, kTag, "v.patch_embd.weight", {P, P, 3, E}, false);
  patch_w_.n_dims = 2;
  patch_w_.ne[0] = 3 * P * P;
  patch_w_.ne[1] = E;
  patch_w_.ne[2] = patch_w_.ne[3] = 1;
  if (patch_w_.ne[0] % dtype_info(patch_w_.type).block != 0) {
    fail(f, "tensor 'v.patch_embd.weight': 3 * patch_size^2 = " + std::to_string(patch_w_.ne[0]) +
                " values per row is not a multiple of the " + dtype_info(patch_w_.type).name + " block size");
  }
  if (f.find_tensor("v.patch_embd.bias")) patch_b_ = load_f32(f, kTag, "v.patch_embd.bias", E);
  hp.has_class_embd = f.find_tensor("v.class_embd") != nullptr;
  if (hp.has_class_embd) class_embd_ = load_f32(f, kTag, "v.class_embd", E);
  pos_embd_ = load_f32(f, kTag, "v.position_embd.weight", int64_t{hp.n_pos()} * E);
  if (f.find_tensor("v.pre_ln.weight")) {
    pre_ln_w_ = load_f32(f, kTag, "v.pre_ln.weight", E);
    pre_ln_b_ = load_f32(f, kTag, "v.pre_ln.bias", E);
  }

  // fc1 / fc2: llama.cpp names them ffn_up / ffn_down; legacy files the other way round. The
  // shape tells (fc1 maps n_embd -> n_ff); with n_ff == n_embd the names are taken as llama.cpp's.
  if (hp.feature_layer > 0) {
    const TensorView* up = f.find_tensor("v.blk.0.ffn_up.weight");
    hp.ffn_swapped = up && F != E && up->n_dims == 2 && up->ne[0] == F && up->ne[1] == E;
  }
  const char* fc1 = hp.ffn_swapped ? "ffn_down" : "ffn_up";
  const char* fc2 = hp.ffn_swapped ? "ffn_up" : "ffn_down";
  layers_.resize(hp.feature_layer);  // blocks past the feature layer never run: not bound
  for (int il = 0; il < hp.feature_layer; ++il) {
    const std::string p = "v.blk." + std::to_string(il) + ".";
    ClipLayer& L = layers_[il];
    L.ln1_w = load_f32(f, kTag, p + "ln1.weight", E);
    L.ln1_b = load_f32(f, kTag, p + "ln1.bias", E);
    L.wq = bind_tensor(f, kTag, p + "attn_q.weight", {E, E}, false);
    L.wk = bind_tensor(f, kTag, p + "attn_k.weight", {E, E}, false);
    L.wv = bind_tensor(f, kTag, p + "attn_v.weight", {E, E}, false);
    L.bq = load_f32(f, kTag, p + "attn_q.bias", E);
    L.bk = load_f32(f, kTag, p + "attn_k.bias", E);
    L.bv = load_f32(f, kTag, p + "attn_v.bias", E);
    L.wo = bind_tensor(f, kTag, p + "attn_out.weight", {E, E}, false);
    L.bo = load_f32(f, kTag, p + "attn_out.bias", E);
    L.ln2_w = load_f32(f, kTag, p + "ln2.weight", E);
    L.ln2_b = load_f32(f, kTag, p + "ln2.bias", E);
    L.w_fc1 = bind_tensor(f, kTag, p + fc1 + ".weight", {E, F}, false);
    L.b_fc1 = load_f32(f, kTag, p + fc1 + ".bias", F);
    L.w_fc2 = bind_tensor(f, kTag, p + fc2 + ".weight", {F, E}, false);
    L.b_fc2 = load_f32(f, kTag, p + fc2 + ".bias", E);
  }
  // Every matmul of the tower multiplies all patches of all images at once: the batch layouts
  // apply (ops/pack.h), and the file pages they replace are released.
  auto pack = [&](TensorView& w) {
    if (packed_.pack(w, true)) f.release_pages(w.data, w.nbytes);
  };
  pack(patch_w_);
  for (ClipLayer& L : layers_) {
    for (TensorView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_fc1, &L.w_fc2}) pack(*w);
  }
}

}  // namespace akvq::models
