// The preprocessing pipeline of akvq/image.h: [pad to square] -> resize shortest side -> center
// crop -> rescale + normalize to CHW floats.
#include <algorithm>
#include <cmath>
#include <string>

#include "akvq/error.h"
#include "akvq/image.h"
#include "image/geometry.h"
#include "image/normalize.h"
#include "image/resize.h"

namespace akvq {

namespace {
constexpr int kMaxConfigSize = 8192;

void check_size_field(const char* name, int v) {
  if (v < 1 || v > kMaxConfigSize) {
    throw InvalidArgument(std::string("[image] preprocess config: ") + name + " = " + std::to_string(v) +
                          " is out of range [1, " + std::to_string(kMaxConfigSize) + "]");
  }
}
}  // namespace

void PreprocessConfig::validate() const {
  check_size_field("image_size", image_size);
  check_size_field("crop_height", crop_height);
  check_size_field("crop_width", crop_width);
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(mean[c])) {
      throw InvalidArgument("[image] preprocess config: mean[" + std::to_string(c) + "] is not finite");
    }
    if (!std::isfinite(std[c]) || !(std[c] > 0.0f)) {
      throw InvalidArgument("[image] preprocess config: std[" + std::to_string(c) + "] = " + std::to_string(std[c]) +
                            " must be finite and > 0");
    }
  }
  if (!std::isfinite(rescale_factor) || !(rescale_factor > 0.0)) {
    throw InvalidArgument("[image] preprocess config: rescale_factor = " + std::to_string(rescale_factor) +
                          " must be finite and > 0");
  }
}

std::array<uint8_t, 3> PreprocessConfig::pad_color() const {
  if (pad_color_override) return *pad_color_override;
  std::array<uint8_t, 3> c{};
  for (int i = 0; i < 3; ++i) {
    const double v = std::trunc(static_cast<double>(mean[i]) * 255.0);
    c[i] = static_cast<uint8_t>(v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v));
  }
  return c;
}

namespace image {

void normalize_chw(const Image& img, const std::array<float, 3>& mean, const std::array<float, 3>& std, double rescale,
                   float* out) {
  float lut[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const float x = static_cast<float>(static_cast<double>(v) * rescale);
      lut[c][v] = (x - mean[c]) / std[c];
    }
  }
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  const uint8_t* p = img.data.data();
  for (size_t i = 0; i < plane; ++i, p += 3) {
    out[i] = lut[0][p[0]];
    out[plane + i] = lut[1][p[1]];
    out[2 * plane + i] = lut[2][p[2]];
  }
}

}  // namespace image

std::vector<float> preprocess(const Image& img, const PreprocessConfig& cfg) {
  cfg.validate();
  if (img.empty()) throw InvalidArgument("[image] preprocess: empty image (zero size)");
  if (img.data.size() != static_cast<size_t>(img.width) * img.height * 3) {
    throw InvalidArgument("[image] preprocess: image holds " + std::to_string(img.data.size()) + " bytes, expected " +
                          std::to_string(img.width) + "x" + std::to_string(img.height) + "x3");
  }
  Image padded;
  const Image* src = &img;
  if (cfg.mode == AspectMode::Pad && img.width != img.height) {
    padded = image::pad_to_square(img, cfg.pad_color());
    src = &padded;
  }
  int rw = 0, rh = 0;
  image::shortest_side_size(src->width, src->height, cfg.image_size, &rw, &rh);
  // Only the part of the resized image that the crop keeps is computed.
  const image::CropOffsets o = image::center_crop_offsets(rh, rw, cfg.crop_height, cfg.crop_width);
  image::Window win;
  win.x = std::max(0, o.left);
  win.y = std::max(0, o.top);
  win.width = std::min(rw, o.left + cfg.crop_width) - win.x;
  win.height = std::min(rh, o.top + cfg.crop_height) - win.y;
  const Image part = image::resize_window(*src, rw, rh, cfg.resample, win);
  Image crop(cfg.crop_width, cfg.crop_height);  // black outside the resized image
  for (int y = 0; y < part.height; ++y) {
    std::copy_n(part.row(y), static_cast<size_t>(part.width) * 3,
                crop.row(win.y - o.top + y) + static_cast<size_t>(win.x - o.left) * 3);
  }
  std::vector<float> out(cfg.n_values());
  image::normalize_chw(crop, cfg.mean, cfg.std, cfg.rescale_factor, out.data());
  return out;
}

}  // namespace akvq
