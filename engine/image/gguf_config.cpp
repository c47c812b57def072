// PreprocessConfig from a model file's keys (see gguf_config.h).
#include "image/gguf_config.h"

#include <cmath>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "gguf/gguf.h"

namespace akvq::image {

namespace {

[[noreturn]] void bad(const gguf::File& f, const std::string& key, const std::string& what) {
  throw FormatError("[image] " + f.path() + ": key '" + key + "' " + what);
}

std::array<float, 3> rgb_floats(const gguf::File& f, const char* key, std::array<float, 3> def) {
  if (!f.has(key)) return def;
  const std::vector<float> v = f.get_f32_array(key);
  if (v.size() != 3) bad(f, key, "has " + std::to_string(v.size()) + " values, expected 3");
  return {v[0], v[1], v[2]};
}

}  // namespace

PreprocessConfig preprocess_config_from_gguf(const gguf::File& f, AspectMode absent_mode) {
  PreprocessConfig c;
  const uint32_t size = f.get_u32("clip.vision.image_size");
  const uint32_t shortest = f.get_u32("akvq.vision.resize_shortest_edge", size);
  if (size < 1 || size > 8192) bad(f, "clip.vision.image_size", "= " + std::to_string(size) + " is out of range");
  if (shortest < 1 || shortest > 8192) {
    bad(f, "akvq.vision.resize_shortest_edge", "= " + std::to_string(shortest) + " is out of range");
  }
  c.crop_height = c.crop_width = static_cast<int>(size);
  c.image_size = static_cast<int>(shortest);
  c.mean = rgb_floats(f, "clip.vision.image_mean", c.mean);
  c.std = rgb_floats(f, "clip.vision.image_std", c.std);

  const std::string rs = f.get_str("akvq.vision.resample", "bicubic");
  bool found = false;
  for (int code = 0; code <= 5 && !found; ++code) {
    if (rs == resample_name(static_cast<Resample>(code))) {
      c.resample = static_cast<Resample>(code);
      found = true;
    }
  }
  if (!found) bad(f, "akvq.vision.resample", "= '" + rs + "' is not a known filter");

  const float rescale = f.get_f32("akvq.vision.rescale_factor", static_cast<float>(1.0 / 255.0));
  c.rescale_factor = rescale == static_cast<float>(1.0 / 255.0) ? 1.0 / 255.0 : static_cast<double>(rescale);

  if (f.has("akvq.vision.pad_mode")) {
    const std::string m = f.get_str("akvq.vision.pad_mode");
    if (m != "crop" && m != "pad") bad(f, "akvq.vision.pad_mode", "= '" + m + "': expected 'crop' or 'pad'");
    c.mode = aspect_mode_from_name(m);
  } else {
    c.mode = absent_mode;
  }
  if (f.has("akvq.vision.pad_color")) {
    const std::vector<int32_t> v = f.get_i32_array("akvq.vision.pad_color");
    if (v.size() != 3) bad(f, "akvq.vision.pad_color", "has " + std::to_string(v.size()) + " values, expected 3");
    std::array<uint8_t, 3> rgb{};
    for (int i = 0; i < 3; ++i) {
      if (v[i] < 0 || v[i] > 255) bad(f, "akvq.vision.pad_color", "has a value outside [0, 255]");
      rgb[i] = static_cast<uint8_t>(v[i]);
    }
    c.pad_color_override = rgb;
  }
  try {
    c.validate();
  } catch (const InvalidArgument& e) {
    throw FormatError("[image] " + f.path() + ": " + e.what());
  }
  return c;
}

}  // namespace akvq::image
