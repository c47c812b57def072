// VisionModel: loading (one-file model or mmproj -> models::Llava), facts, encode.
#include "akvq/vision.h"

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>

#include "akvq/error.h"
#include "api/model_impl.h"
#include "cpu/thread_pool.h"
#include "gguf/gguf.h"
#include "models/llava.h"

namespace akvq {

struct VisionModel::Impl {
  std::shared_ptr<const Model> model;    // keeps the shared file alive (from_model)
  std::unique_ptr<gguf::File> own_file;  // load(path)
  const gguf::File* file = nullptr;
  std::unique_ptr<models::Llava> llava;
  VisionInfo info;

  // encode state: one call at a time
  std::mutex mu;
  std::unique_ptr<cpu::ThreadPool> pool;
  models::ClipWorkspace ws;
  std::vector<float> hidden;

  void bind(const gguf::File& f) {
    file = &f;
    llava = std::make_unique<models::Llava>(f);
    const models::ClipHparams& hp = llava->clip().hparams();
    VisionInfo& i = info;
    i.path = f.path();
    i.projector_type = f.get_str("clip.projector_type", "mlp");
    i.image_size = hp.image_size;
    i.patch_size = hp.patch_size;
    i.n_patches = hp.n_patches();
    i.n_tokens_per_image = hp.n_out();
    i.n_embd_vision = hp.n_embd;
    i.n_embd = llava->projector().n_embd_out();
    i.n_layer = hp.n_layer;
    i.feature_layer = hp.feature_layer;
    i.feature_layers = hp.feature_layers;
    i.n_embd_features = hp.n_embd_out();
    i.n_head = hp.n_head;
    i.n_ff = hp.n_ff;
    i.eps = hp.eps;
    i.activation = ops::activation_name(hp.act);
    i.projector_activation = ops::activation_name(llava->projector().activation());
    i.select_strategy = hp.select == models::ClipSelect::Full ? "full" : "default";
    i.image_mean = hp.image_mean;
    i.image_std = hp.image_std;
    const char* pad_key = models::clip_key(f, models::clip_keys::kPadMode);
    i.pad_mode = f.get_str(pad_key, "");
    if (!i.pad_mode.empty() && i.pad_mode != "crop" && i.pad_mode != "pad") {
      throw FormatError("[clip] " + f.path() + ": key '" + pad_key + "' = '" + i.pad_mode +
                        "' (expected 'crop' or 'pad')");
    }
    const char* tok_key = models::clip_key(f, models::clip_keys::kImageTokenId);
    const int64_t tok = f.get_i64(tok_key, -1);
    if (tok < -1 || tok > INT32_MAX) {
      throw FormatError("[clip] " + f.path() + ": key '" + tok_key + "' = " + std::to_string(tok) + " is out of range");
    }
    i.image_token_id = static_cast<int32_t>(tok);
    i.legacy_ffn_names = hp.ffn_swapped;
    i.packed_bytes = static_cast<int64_t>(llava->clip().packed_bytes() + llava->projector().packed_bytes());
  }

  // Images go through the tower kMaxPass at a time (bounded scratch memory; an image's rows do
  // not depend on the images encoded with it). fn(first image, count).
  static constexpr int kMaxPass = 4;
  template <class Fn>
  void for_passes(int n_images, const Fn& fn) {
    for (int b = 0; b < n_images; b += kMaxPass) fn(b, std::min(kMaxPass, n_images - b));
  }
  const float* pixels_of(const float* pixels, int b) const {
    return pixels + static_cast<size_t>(b) * 3 * info.image_size * info.image_size;
  }
  size_t rows_of(int b) const { return static_cast<size_t>(b) * info.n_tokens_per_image; }

  cpu::ThreadPool& pool_for(int n_threads) {
    const int n = n_threads > 0 ? n_threads : cpu::ThreadPool::default_threads();
    if (!pool || pool->size() != n) pool = std::make_unique<cpu::ThreadPool>(n);
    return *pool;
  }

  void check_call(const float* pixels, int n_images, int n_threads) const {
    if (n_images < 1) throw InvalidArgument("[vision] encode: no images (n_images = " + std::to_string(n_images) + ")");
    if (!pixels) throw InvalidArgument("[vision] encode: pixels is null");
    if (n_threads < 0 || n_threads > 512) {
      throw InvalidArgument("[vision] encode: n_threads = " + std::to_string(n_threads) + " is out of range [0, 512]");
    }
  }
};

VisionModel::VisionModel() : impl_(std::make_unique<Impl>()) {}
VisionModel::~VisionModel() = default;

std::shared_ptr<VisionModel> VisionModel::load(const std::string& path) {
  std::shared_ptr<VisionModel> m(new VisionModel());
  m->impl_->own_file = gguf::File::open(path);
  try {
    m->impl_->bind(*m->impl_->own_file);
  } catch (const Unavailable& e) {  // a file given as the vision tower that has none: a wrong file
    throw FormatError(std::string(e.what()) + " (a vision tower file, llama.cpp's mmproj, is expected here)");
  }
  return m;
}

std::shared_ptr<VisionModel> VisionModel::from_model(std::shared_ptr<const Model> model) {
  if (!model) throw InvalidArgument("[vision] from_model: model is null");
  std::shared_ptr<VisionModel> m(new VisionModel());
  m->impl_->model = model;
  m->impl_->bind(*model->impl().file);
  VisionInfo& i = m->impl_->info;
  if (i.image_token_id < 0) {  // the vocabulary's "<image>" token, when it has one
    const std::vector<int32_t> ids = model->tokenize("<image>", false, true);
    if (ids.size() == 1 && model->impl().tokenizer->text(ids[0]) == "<image>") i.image_token_id = ids[0];
  }
  m->check_compatible(*model);
  return m;
}

const VisionInfo& VisionModel::info() const {
  return impl_->info;
}

void VisionModel::check_compatible(const Model& text) const {
  const int nv = impl_->info.n_embd, nt = text.info().n_embd;
  if (nv != nt) {
    throw InvalidArgument("[vision] the projector of " + impl_->info.path + " outputs rows of width " +
                          std::to_string(nv) + " but the text model " + text.info().path + " has n_embd " +
                          std::to_string(nt) + ": this mmproj does not belong to that model");
  }
  const int32_t tok = impl_->info.image_token_id, n_vocab = text.info().n_vocab;
  if (tok >= n_vocab) {
    throw InvalidArgument("[vision] the image token id " + std::to_string(tok) + " of " + impl_->info.path +
                          " is outside the vocabulary of " + text.info().path +
                          " (" + std::to_string(n_vocab) + " tokens)");
  }
  // A vocabulary with an "<image>" token marks images with it: an image token id naming another
  // token would make prompts' markers and the images disagree (akvq-cli and Python read markers
  // by the text and by the id).
  if (tok >= 0) {
    const std::vector<int32_t> ids = text.tokenize("<image>", false, true);
    if (ids.size() == 1 && ids[0] != tok && text.impl().tokenizer->text(ids[0]) == "<image>") {
      throw FormatError("[vision] the image token id " + std::to_string(tok) + " ('" +
                        text.impl().tokenizer->text(tok) + "') of " + impl_->info.path +
                        " is not the vocabulary's '<image>' token (id " + std::to_string(ids[0]) + ") of " +
                        text.info().path);
    }
  }
}

std::vector<float> VisionModel::encode(const float* pixels, int n_images, int n_threads) const {
  Impl& im = *impl_;
  im.check_call(pixels, n_images, n_threads);
  std::vector<float> out(static_cast<size_t>(n_images) * im.info.n_tokens_per_image * im.info.n_embd);
  std::lock_guard<std::mutex> lk(im.mu);
  im.for_passes(n_images, [&](int b, int n) {
    im.llava->encode_images(im.pixels_of(pixels, b), n, im.ws, im.hidden, im.pool_for(n_threads),
                            out.data() + im.rows_of(b) * im.info.n_embd);
  });
  return out;
}

std::vector<float> VisionModel::encode_features(const float* pixels, int n_images, int n_threads) const {
  Impl& im = *impl_;
  im.check_call(pixels, n_images, n_threads);
  std::vector<float> out(static_cast<size_t>(n_images) * im.info.n_tokens_per_image * im.info.n_embd_features);
  std::lock_guard<std::mutex> lk(im.mu);
  im.for_passes(n_images, [&](int b, int n) {
    im.llava->clip().encode(im.pixels_of(pixels, b), n, im.ws, im.pool_for(n_threads),
                            out.data() + im.rows_of(b) * im.info.n_embd_features);
  });
  return out;
}

}  // namespace akvq
