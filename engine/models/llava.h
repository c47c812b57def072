// LLaVA glue: the CLIP vision tower (models/clip.h) followed by the multimodal projector
// (llama.cpp's projector type `mlp`: Linear `mm.0` -> GELU (erf; or the file's
// akvq.vision.projector_hidden_act) -> Linear `mm.2`), mapping
// images to rows of the text model's embedding space.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "cpu/thread_pool.h"
#include "models/clip.h"
#include "ops/ops.h"
#include "ops/pack.h"

namespace akvq {
namespace gguf {
class File;
}

namespace models {

class LlavaProjector {
 public:
  // Binds `mm.0.*` / `mm.2.*` of f (outliving this object); n_embd_vision: the width of the
  // tower's output (n_embd times the number of feature layers).
  // Throws FormatError naming the tensor, Unavailable for a projector type other than `mlp`.
  LlavaProjector(const gguf::File& f, int n_embd_vision);

  int n_embd_in() const { return n_in_; }
  int n_embd_out() const { return n_out_; }  // must equal the text model's n_embd
  ops::Activation activation() const { return act_; }
  size_t packed_bytes() const { return packed_.bytes(); }  // weights repacked at load
  // x [n, n_embd_in] -> out [n, n_embd_out]; hidden: scratch grown to [n, n_mid].
  void forward(const float* x, int64_t n, std::vector<float>& hidden, cpu::ThreadPool& pool, float* out) const;

 private:
  int n_in_ = 0, n_mid_ = 0, n_out_ = 0;
  ops::Activation act_ = ops::Activation::Gelu;  // akvq.vision.projector_hidden_act (default gelu, erf)
  TensorView w1_;                                // mm.0.weight ne {n_in, n_mid}
  std::vector<float> b1_;                        // [n_mid]; empty: no bias
  TensorView w2_;                                // mm.2.weight ne {n_mid, n_out}
  std::vector<float> b2_;                        // [n_out]; empty: no bias
  ops::PackedWeights packed_;                    // w1_, w2_ in the layout of the batch kernels
};

// Vision tower + projector of one file.
class Llava {
 public:
  explicit Llava(const gguf::File& f);

  const Clip& clip() const { return clip_; }
  const LlavaProjector& projector() const { return proj_; }
  int n_tokens_per_image() const { return clip_.hparams().n_out(); }

  // pixels [n_img, 3, S, S] -> out [n_img * n_tokens_per_image, n_embd_out]
  void encode_images(const float* pixels, int n_img, ClipWorkspace& ws, std::vector<float>& hidden,
                     cpu::ThreadPool& pool, float* out) const;

 private:
  Clip clip_;
  LlavaProjector proj_;
};

}  // namespace models
}  // namespace akvq
