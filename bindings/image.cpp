// Bindings of image input (akvq/image.h): preprocessing to CLIP pixels, decoding with the
// engine's codecs, RGB conversion. Thin: array conversion and GIL release only.
#include <akvq/error.h>
#include <akvq/image.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>

#include <array>
#include <string>
#include <variant>
#include <vector>

#include "common.h"
#include "engine_call.h"
#include "image/resize.h"

namespace akvq::bind {

namespace {

using U8Image = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;
using U8Out = nb::ndarray<nb::numpy, uint8_t>;
using F32Out = nb::ndarray<nb::numpy, float>;

template <typename T, typename Out>
Out give(std::vector<T>&& v, std::initializer_list<size_t> shape) {
  auto* owner = new std::vector<T>(std::move(v));
  nb::capsule del(owner, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return Out(owner->data(), shape, del);
}

U8Out image_array(Image&& im) {
  const size_t h = static_cast<size_t>(im.height), w = static_cast<size_t>(im.width);
  return give<uint8_t, U8Out>(std::move(im.data), {h, w, 3});
}

AlphaMode parse_alpha(const std::string& s) {
  if (s == "white") return AlphaMode::White;
  if (s == "drop") return AlphaMode::Drop;
  throw InvalidArgument("[image] alpha '" + s + "': expected 'white' (composite onto white) or 'drop'");
}

// [H, W] or [H, W, C] -> (height, width, channels), checked.
void image_shape(const U8Image& a, int* h, int* w, int* c, bool rgb_only) {
  if (a.ndim() != 2 && a.ndim() != 3) {
    throw InvalidArgument("[image] expected a uint8 array [height, width, 3]" +
                          std::string(rgb_only ? "" : " (or [height, width] / [height, width, 1|2|4]") + ", got " +
                          std::to_string(a.ndim()) + " dimensions");
  }
  const size_t ch = a.ndim() == 3 ? a.shape(2) : 1;
  if (rgb_only ? ch != 3 : (ch < 1 || ch > 4)) {
    throw InvalidArgument("[image] expected " + std::string(rgb_only ? "3 channels (RGB)" : "1 to 4 channels") +
                          ", got " + std::to_string(ch));
  }
  if (a.shape(0) == 0 || a.shape(1) == 0) {
    throw InvalidArgument("[image] zero-size image (" + std::to_string(a.shape(0)) + "x" + std::to_string(a.shape(1)) +
                          ")");
  }
  if (a.shape(0) > static_cast<size_t>(kMaxImageSide) || a.shape(1) > static_cast<size_t>(kMaxImageSide)) {
    throw InvalidArgument("[image] image of " + std::to_string(a.shape(1)) + "x" + std::to_string(a.shape(0)) +
                          " pixels exceeds " + std::to_string(kMaxImageSide) + " per side");
  }
  *h = static_cast<int>(a.shape(0));
  *w = static_cast<int>(a.shape(1));
  *c = static_cast<int>(ch);
}

}  // namespace

void init_image(nb::module_& m) {
  m.def(
      "preprocess_image",
      [](U8Image image, int image_size, std::variant<int, std::array<int, 2>> crop_size, std::array<float, 3> mean,
         std::array<float, 3> std, int resample, const std::string& mode, double rescale_factor) {
        int h = 0, w = 0, c = 0;
        image_shape(image, &h, &w, &c, true);
        PreprocessConfig cfg;
        cfg.image_size = image_size;
        if (const int* s = std::get_if<int>(&crop_size)) {
          cfg.crop_height = cfg.crop_width = *s;
        } else {
          const auto& hw = std::get<std::array<int, 2>>(crop_size);
          cfg.crop_height = hw[0];
          cfg.crop_width = hw[1];
        }
        cfg.mean = mean;
        cfg.std = std;
        cfg.resample = resample_from_code(resample);
        cfg.mode = aspect_mode_from_name(mode);
        cfg.rescale_factor = rescale_factor;
        cfg.validate();
        std::vector<float> out;
        {
          EngineCall r;
          out = preprocess(Image::from_rgb(image.data(), w, h), cfg);
        }
        return give<float, F32Out>(std::move(out),
                                   {3, static_cast<size_t>(cfg.crop_height), static_cast<size_t>(cfg.crop_width)});
      },
      nb::arg("image").noconvert(), nb::arg("image_size"), nb::arg("crop_size"), nb::arg("mean"), nb::arg("std"),
      nb::arg("resample") = 3, nb::arg("mode") = "crop", nb::arg("rescale_factor") = 1.0 / 255.0,
      "uint8 RGB [H, W, 3] -> float32 [3, crop_h, crop_w]: [pad to square with int(255 * mean) when mode is "
      "'pad'] -> resize the shortest side to image_size (PIL filter code `resample`) -> center crop "
      "(crop_size: int or (height, width)) -> x * rescale_factor -> (x - mean) / std.");

  m.def(
      "resize_image",
      [](U8Image image, int width, int height, int resample) {
        int h = 0, w = 0, c = 0;
        image_shape(image, &h, &w, &c, true);
        const Resample r = resample_from_code(resample);
        Image im;
        {
          EngineCall guard;
          im = image::resize(Image::from_rgb(image.data(), w, h), width, height, r);
        }
        return image_array(std::move(im));
      },
      nb::arg("image").noconvert(), nb::arg("width"), nb::arg("height"), nb::arg("resample") = 3,
      "uint8 RGB [H, W, 3] -> uint8 [height, width, 3], resized as PIL's Image.resize((width, height), resample) "
      "does (bit-exact).");

  m.def(
      "load_image",
      [](const std::string& path, const std::string& alpha) {
        const AlphaMode a = parse_alpha(alpha);
        Image im;
        {
          EngineCall r;
          im = load_image(path, a);
        }
        return image_array(std::move(im));
      },
      nb::arg("path"), nb::arg("alpha") = "white",
      "Decodes a PNG or JPEG file with the engine's codecs (libpng / libjpeg; format by magic bytes) -> uint8 "
      "[H, W, 3]. alpha: 'white' composites transparency onto white, 'drop' ignores it.");

  m.def(
      "decode_image",
      [](nb::bytes data, const std::string& alpha) {
        const AlphaMode a = parse_alpha(alpha);
        // Copied so the computation can run without the GIL (the bytes object stays owned by Python).
        std::vector<uint8_t> bytes(static_cast<const uint8_t*>(data.data()),
                                   static_cast<const uint8_t*>(data.data()) + data.size());
        Image im;
        {
          EngineCall r;
          im = decode_image(bytes.data(), bytes.size(), a);
        }
        return image_array(std::move(im));
      },
      nb::arg("data"), nb::arg("alpha") = "white", "decode_image for bytes held in memory -> uint8 [H, W, 3].");

  m.def(
      "image_to_rgb",
      [](U8Image image, const std::string& alpha) {
        int h = 0, w = 0, c = 0;
        image_shape(image, &h, &w, &c, false);
        const AlphaMode a = parse_alpha(alpha);
        Image im;
        {
          EngineCall r;
          im = to_rgb(image.data(), w, h, c, a);
        }
        return image_array(std::move(im));
      },
      nb::arg("image").noconvert(), nb::arg("alpha") = "white",
      "uint8 [H, W] or [H, W, C] (C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) -> uint8 [H, W, 3].");

  m.def(
      "image_codecs",
      []() {
        nb::dict d;
        d["png"] = can_decode(ImageFormat::Png);
        d["jpeg"] = can_decode(ImageFormat::Jpeg);
        return d;
      },
      "Which image formats this build decodes: {'png': bool, 'jpeg': bool}.");
}

}  // namespace akvq::bind
