// Bindings for prompts with images (akvq/multimodal.h): the model file's preprocessing, encoding a
// call's images together, and the decoder input of a prompt with image markers. Thin: type
// conversion and GIL release only.
#include <akvq/error.h>
#include <akvq/multimodal.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "common.h"
#include "engine_call.h"

namespace akvq::bind {

namespace {

using RgbArray = nb::ndarray<const uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu>;
using PixelsArray = nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;
using F32Out = nb::ndarray<nb::numpy, float>;

F32Out give(std::vector<float>&& v, std::initializer_list<size_t> shape) {
  auto* owner = new std::vector<float>(std::move(v));
  nb::capsule del(owner, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  return F32Out(owner->data(), shape, del);
}

}  // namespace

void init_multimodal(nb::module_& m) {
  m.def(
      "vision_preprocess",
      [](const VisionModel& vision, RgbArray rgb) {
        if (rgb.shape(2) != 3) throw InvalidArgument("[image] expected uint8 RGB [H, W, 3]");
        const PreprocessConfig cfg = preprocess_config(vision);
        std::vector<float> out;
        {
          EngineCall r;
          out = preprocess(Image::from_rgb(rgb.data(), static_cast<int>(rgb.shape(1)), static_cast<int>(rgb.shape(0))),
                           cfg);
        }
        return give(std::move(out), {3, static_cast<size_t>(cfg.crop_height), static_cast<size_t>(cfg.crop_width)});
      },
      nb::arg("vision"), nb::arg("image").noconvert(),
      "uint8 RGB [H, W, 3] -> float32 [3, S, S] preprocessed as the vision model's file describes.");

  nb::class_<EncodedImages>(m, "EncodedImages")
      .def_ro("n_images", &EncodedImages::n_images)
      .def_ro("n_tokens_per_image", &EncodedImages::n_tokens_per_image)
      .def_ro("hashes", &EncodedImages::hashes)
      .def_prop_ro("rows", [](const EncodedImages& e) {
        std::vector<float> copy = e.rows;
        return give(std::move(copy), {static_cast<size_t>(e.n_images), static_cast<size_t>(e.n_tokens_per_image),
                                      static_cast<size_t>(e.n_embd)});
      });

  m.def(
      "encode_images",
      [](const VisionModel& vision, PixelsArray pixels, int n_threads) {
        const size_t n = pixels.shape(0), per = pixels.size() / (n ? n : 1);
        std::vector<std::vector<float>> images(n);
        for (size_t k = 0; k < n; ++k) images[k].assign(pixels.data() + k * per, pixels.data() + (k + 1) * per);
        EngineCall r;
        return encode_images(vision, images, n_threads);
      },
      nb::arg("vision"), nb::arg("pixels"), nb::arg("n_threads") = 0,
      "Preprocessed images [n, 3, S, S] -> EncodedImages (encoded together; a content hash each).");

  m.def(
      "image_prompt_input",
      [](const std::vector<int32_t>& ids, int32_t image_token_id, const EncodedImages& images, int n_ctx) {
        return image_prompt_input(ids, image_token_id, images, n_ctx);
      },
      nb::arg("ids"), nb::arg("image_token_id"), nb::arg("images"), nb::arg("n_ctx") = 0,
      "SessionInput of prompt ids whose image tokens are replaced by the images' rows, in order.");

  m.def(
      "image_token_id", [](const Model& text, const VisionModel& vision) { return image_token_id(text, vision); },
      nb::arg("text"), nb::arg("vision"));
  m.def(
      "image_marker", [](const Model& text, int32_t image_token) { return image_marker(text, image_token); },
      nb::arg("text"), nb::arg("image_token"));
  m.def(
      "tokenize_image_prompt",
      [](const Model& text, const std::string& prompt, int32_t image_token, bool add_special) {
        return tokenize_image_prompt(text, prompt, image_token, add_special);
      },
      nb::arg("text"), nb::arg("prompt"), nb::arg("image_token"), nb::arg("add_special") = true);
  m.def(
      "starts_with_bos", [](const Model& text, const std::string& prompt) { return starts_with_bos(text, prompt); },
      nb::arg("text"), nb::arg("prompt"));
  m.def("format_image_chat", &format_image_chat, nb::arg("format"), nb::arg("prompt"), nb::arg("n_images"),
        nb::arg("marker") = "<image>", nb::arg("image_label") = "");
}

}  // namespace akvq::bind
