// LLaVA projector (mm.0 -> GELU -> mm.2) and the image -> embeddings glue.
#include "models/llava.h"

#include <string>

#include "akvq/error.h"
#include "gguf/gguf.h"
#include "models/weights.h"
#include "ops/ops.h"

namespace akvq::models {

namespace {
const std::string kTag = "[llava]";
}

LlavaProjector::LlavaProjector(const gguf::File& f, int n_embd_vision) {
  const std::string type = f.get_str("clip.projector_type", "mlp");
  if (type != "mlp") {
    throw FormatError(kTag + " " + f.path() + ": projector type '" + type + "' is not supported (supported: mlp)");
  }
  const std::string act = f.get_str("akvq.vision.projector_hidden_act", "gelu");
  if (!ops::activation_from_name(act.c_str(), &act_)) {
    throw FormatError(kTag + " " + f.path() + ": projector activation '" + act +
                      "' is not supported (gelu, gelu_pytorch_tanh, quick_gelu, silu, relu)");
  }
  const TensorView* w1 = f.find_tensor("mm.0.weight");
  const TensorView* w2 = f.find_tensor("mm.2.weight");
  if (!w1 || !w2) {
    throw FormatError(kTag + " " + f.path() + ": tensor '" + std::string(w1 ? "mm.2.weight" : "mm.0.weight") +
                      "' of the projector is missing");
  }
  if (w1->n_dims != 2 || w2->n_dims != 2) {
    throw FormatError(kTag + " " + f.path() + ": projector weights must be 2-D (mm.0.weight " + shape_str(*w1) +
                      ", mm.2.weight " + shape_str(*w2) + ")");
  }
  n_in_ = n_embd_vision;
  n_mid_ = static_cast<int>(w1->ne[1]);
  n_out_ = static_cast<int>(w2->ne[1]);
  w1_ = bind_tensor(f, kTag, "mm.0.weight", {n_in_, n_mid_}, false);
  w2_ = bind_tensor(f, kTag, "mm.2.weight", {n_mid_, n_out_}, false);
  // The biases are optional, each (transformers' multimodal_projector_bias = false has none; llama.cpp's
  // clip loader reads them as optional too): an absent one adds nothing.
  if (f.find_tensor("mm.0.bias")) b1_ = load_f32(f, kTag, "mm.0.bias", n_mid_);
  if (f.find_tensor("mm.2.bias")) b2_ = load_f32(f, kTag, "mm.2.bias", n_out_);
  for (TensorView* w : {&w1_, &w2_}) {  // always applied to all the image rows at once
    if (packed_.pack(*w, true)) f.release_pages(w->data, w->nbytes);
  }
}

void LlavaProjector::forward(const float* x, int64_t n, std::vector<float>& hidden, cpu::ThreadPool& pool,
                             float* out) const {
  if (static_cast<int64_t>(hidden.size()) < n * n_mid_) hidden.resize(static_cast<size_t>(n * n_mid_));
  float* h = hidden.data();         // [n, n_mid]
  ops::matmul(w1_, x, n, h, pool);  // linear_1
  if (!b1_.empty()) ops::add_bias(h, b1_.data(), n, n_mid_, pool);
  ops::activation(act_, h, n, n_mid_, pool);  // GELU (erf) for LLaVA
  ops::matmul(w2_, h, n, out, pool);          // linear_2: [n, n_out]
  if (!b2_.empty()) ops::add_bias(out, b2_.data(), n, n_out_, pool);
}

Llava::Llava(const gguf::File& f) : clip_(f), proj_(f, clip_.hparams().n_embd_out()) {}

void Llava::encode_images(const float* pixels, int n_img, ClipWorkspace& ws, std::vector<float>& hidden,
                          cpu::ThreadPool& pool, float* out) const {
  const int64_t n = int64_t{n_img} * n_tokens_per_image();
  std::vector<float> feats(static_cast<size_t>(n * clip_.hparams().n_embd_out()));  // [n, n_embd_features]
  clip_.encode(pixels, n_img, ws, pool, feats.data());
  proj_.forward(feats.data(), n, hidden, pool, out);
}

}  // namespace akvq::models
