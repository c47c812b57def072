// Public C++ API of the vision side: a VisionModel (CLIP vision tower + LLaVA projector) loaded
// from a one-file model or from a separate mmproj file (llama.cpp's two-file layout). It turns
// preprocessed images into rows of the text model's embedding space, which a Session evaluates
// as input rows (engine.h: SessionInput).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "akvq/engine.h"

namespace akvq {

struct VisionInfo {
  std::string path;            // the file the vision tower was loaded from
  std::string projector_type;  // "mlp"
  int image_size = 0;          // input images are image_size x image_size (after preprocessing)
  int patch_size = 0;
  int n_patches = 0;                // (image_size / patch_size)^2
  int n_tokens_per_image = 0;       // rows per image: n_patches ("default") or n_patches + 1 ("full")
  int n_embd_vision = 0;            // width of the vision tower
  int n_embd = 0;                   // width of the projected rows (the text model's n_embd)
  int n_layer = 0;                  // blocks stored in the file
  int feature_layer = 0;            // the deepest hidden state used, in [0, n_layer] (= blocks run)
  std::vector<int> feature_layers;  // hidden states used, concatenated in this order (usually one)
  int n_embd_features = 0;          // width of encode_features rows: n_embd_vision * feature_layers
  int n_head = 0;
  int n_ff = 0;
  float eps = 0;
  std::string activation;             // vision MLP: "quick_gelu" | "gelu" (transformers' names)
  std::string projector_activation;   // between mm.0 and mm.2: "gelu" (erf) for LLaVA
  std::string select_strategy;        // "default" (CLS dropped) | "full"
  std::array<float, 3> image_mean{};  // normalization of the [0, 1] pixels: (x - mean) / std
  std::array<float, 3> image_std{};
  std::string pad_mode;           // "crop" | "pad" (LLaVA-1.5's pad to square); "" when unstated
  int32_t image_token_id = -1;    // the text vocabulary's image token, -1 when the file has none
  bool legacy_ffn_names = false;  // fc1/fc2 were stored as ffn_down/ffn_up (old llama.cpp files)
  int64_t packed_bytes = 0;       // memory of the tower's and projector's weights repacked at load
};

class VisionModel {
 public:
  // Memory-maps path and binds its vision tower and projector: a one-file model (text + `v.*` +
  // `mm.*`) or an mmproj file (arch `clip`). Throws IoError, FormatError (bad file, naming the
  // key or tensor), Unavailable (no vision encoder in the file, unsupported projector).
  static std::shared_ptr<VisionModel> load(const std::string& path);
  // The vision tower of a loaded one-file model (shares its mapped file).
  static std::shared_ptr<VisionModel> from_model(std::shared_ptr<const Model> model);
  ~VisionModel();

  const VisionInfo& info() const;

  // Throws InvalidArgument when the projector's output width differs from the text model's
  // embedding width (naming both), i.e. this mmproj does not belong to that model.
  void check_compatible(const Model& text) const;

  // pixels [n_images, 3, image_size, image_size] (normalized CHW floats) ->
  // [n_images * n_tokens_per_image, n_embd] projected rows, image after image. The images are
  // encoded together (up to 4 per pass through the tower); an image's rows are the same bit for
  // bit whatever images come with it.
  // n_threads 0: the default thread count. Thread-safe (concurrent calls run one at a time).
  std::vector<float> encode(const float* pixels, int n_images, int n_threads = 0) const;
  // The vision tower's selected hidden state(s) before the projector:
  // [n_images * n_tokens_per_image, n_embd_features].
  std::vector<float> encode_features(const float* pixels, int n_images, int n_threads = 0) const;

  struct Impl;

 private:
  VisionModel();
  std::unique_ptr<Impl> impl_;
};

}  // namespace akvq
