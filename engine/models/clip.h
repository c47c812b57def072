// CLIP vision transformer (the ViT of LLaVA): patch embedding as a matmul over flattened patches,
// class + position embeddings, pre-LayerNorm, pre-LN blocks (LayerNorm -> multi-head attention
// with biases -> residual -> LayerNorm -> MLP quick_gelu|gelu -> residual), then the hidden state
// of the feature layer with the CLS row dropped ("default") or kept ("full").
//
// Weights and hyperparameters use llama.cpp's mmproj names (`v.*` tensors, `clip.vision.*` keys),
// from a one-file model (text + vision) or a separate mmproj file (arch `clip`). Legacy files are
// read as published: the unused last block missing (the feature is then the output of the last
// stored block), fc1/fc2 stored as ffn_down/ffn_up (detected by shape), no post_ln.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "cpu/thread_pool.h"
#include "ops/ops.h"
#include "ops/pack.h"

namespace akvq {
namespace gguf {
class File;
}

namespace models {

// GGUF keys of the vision tower beyond llama.cpp's (written by our converter). When absent the
// values follow llama.cpp's reading of LLaVA files (see ClipHparams). Each key is also read under
// its `clip.vision.*` spelling (the second name) when the first is absent.
namespace clip_keys {
// i32: index into the encoder's hidden states as transformers numbers them (0 = embeddings after
// pre-LN, i = output of block i, negative counts from the end: -1 = last block), over the blocks
// stored in the file (block_count). Or an i32 array (llama.cpp's `clip.vision.feature_layer`,
// non-negative indices in the same numbering): the hidden states of the listed layers,
// concatenated along the features in that order (transformers' list-valued vision_feature_layer).
constexpr const char* kFeatureLayer[2] = {"akvq.vision.feature_layer", "clip.vision.feature_layer"};
// string: "default" (drop the CLS row) | "full" (keep it).
constexpr const char* kSelectStrategy[2] = {"akvq.vision.select_strategy", "clip.vision.select_strategy"};
// i32: id of the image placeholder token of the text vocabulary (e.g. "<image>").
constexpr const char* kImageTokenId[2] = {"akvq.vision.image_token_id", "clip.vision.image_token_id"};
// string: "crop" (resize shortest side + center crop) | "pad" (pad to a square with the mean
// colour first, LLaVA-1.5's original preprocessing).
constexpr const char* kPadMode[2] = {"akvq.vision.pad_mode", "clip.vision.pad_mode"};
}  // namespace clip_keys

// The spelling of a clip_keys pair present in f (the first when neither is).
const char* clip_key(const gguf::File& f, const char* const (&names)[2]);

enum class ClipSelect { Default, Full };  // drop CLS | keep CLS

struct ClipHparams {
  int image_size = 0;                                // clip.vision.image_size (square input, pixels)
  int patch_size = 0;                                // clip.vision.patch_size
  int n_embd = 0;                                    // clip.vision.embedding_length (hidden width)
  int n_ff = 0;                                      // clip.vision.feed_forward_length
  int n_head = 0;                                    // clip.vision.attention.head_count
  int head_dim = 0;                                  // n_embd / n_head
  int n_layer = 0;                                   // clip.vision.block_count: blocks stored in the file
  float eps = 1e-5f;                                 // clip.vision.attention.layer_norm_epsilon
  ops::Activation act = ops::Activation::QuickGelu;  // akvq.vision.hidden_act, else clip.use_gelu
  std::array<float, 3> image_mean{};                 // clip.vision.image_mean
  std::array<float, 3> image_std{};                  // clip.vision.image_std
  std::vector<int> feature_layers;                   // resolved indices into hidden states, in [0, n_layer], in order
  int feature_layer = 0;                             // the deepest of them: blocks that run
  ClipSelect select = ClipSelect::Default;
  bool ffn_swapped = false;  // legacy: ffn_down holds fc1, ffn_up holds fc2
  bool has_class_embd = true;
  int n_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  int n_pos() const { return n_patches() + (has_class_embd ? 1 : 0); }                 // rows per image
  int n_out() const { return select == ClipSelect::Full ? n_pos() : n_patches(); }     // output rows per image
  int n_embd_out() const { return n_embd * static_cast<int>(feature_layers.size()); }  // output width
};

// One pre-LN block. Matmul weights are views into the file; 1-D parameters are f32 copies
// (dequantized at load whatever their stored type).
struct ClipLayer {
  std::vector<float> ln1_w, ln1_b;  // [n_embd]
  TensorView wq, wk, wv;            // ne {n_embd, n_embd}
  std::vector<float> bq, bk, bv;    // [n_embd]
  TensorView wo;                    // ne {n_embd, n_embd}
  std::vector<float> bo;            // [n_embd]
  std::vector<float> ln2_w, ln2_b;  // [n_embd]
  TensorView w_fc1;                 // ne {n_embd, n_ff} (CLIP's fc1; llama.cpp: ffn_up, legacy: ffn_down)
  std::vector<float> b_fc1;         // [n_ff]
  TensorView w_fc2;                 // ne {n_ff, n_embd}
  std::vector<float> b_fc2;         // [n_embd]
};

// Scratch buffers of one encode call, grown on demand.
struct ClipWorkspace {
  std::vector<float> patches, x, xn, q, k, v, attn, ff;
  // Optional debug hook after each named step: "embd" (layer -1, before pre-LN), "pre_ln"
  // (layer -1), "ln1", "q", "k", "v", "attn", "attn_out", "ln2", "ffn_act", "ffn_out", "l_out".
  std::function<void(const char* name, int layer, const float* data, int64_t rows, int64_t cols)> hook;
};

class Clip {
 public:
  // Binds and validates the `v.*` tensors and `clip.*` keys of f (which must outlive this
  // object). Throws FormatError naming the key or tensor at fault, Unavailable for a vision
  // tower this engine does not run.
  explicit Clip(const gguf::File& f);

  const ClipHparams& hparams() const { return hp_; }
  size_t packed_bytes() const { return packed_.bytes(); }  // matmul weights repacked at load

  // pixels [n_img, 3, image_size, image_size] normalized CHW -> out [n_img * n_out, n_embd_out]
  // (the selected hidden state(s)). All images go through every matmul together.
  void encode(const float* pixels, int n_img, ClipWorkspace& ws, cpu::ThreadPool& pool, float* out) const;

 private:
  ClipHparams hp_;
  TensorView patch_w_;                      // viewed as ne {3 * P * P, n_embd} (conv weight [n_embd, 3, P, P])
  std::vector<float> patch_b_;              // [n_embd] or empty
  std::vector<float> class_embd_;           // [n_embd] or empty
  std::vector<float> pos_embd_;             // [n_pos, n_embd]
  std::vector<float> pre_ln_w_, pre_ln_b_;  // [n_embd] or empty (no pre-LN)
  std::vector<ClipLayer> layers_;           // the feature_layer blocks that run
  ops::PackedWeights packed_;               // the matmul weights in the layout of the batch kernels
};

}  // namespace models
}  // namespace akvq
