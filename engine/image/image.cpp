// Image storage, RGB conversion and the names of the enums of akvq/image.h.
#include <algorithm>
#include <string>

#include "akvq/error.h"
#include "akvq/image.h"

namespace akvq {

namespace {

void check_dims(const char* what, int width, int height) {
  if (width < 1 || height < 1 || width > kMaxImageSide || height > kMaxImageSide ||
      static_cast<int64_t>(width) * height > kMaxImagePixels) {
    throw InvalidArgument(
        std::string("[image] ") + what + ": size " + std::to_string(width) + "x" + std::to_string(height) +
        (width < 1 || height < 1 ? " is empty (zero-size image)"
                                 : " is out of range (at most " + std::to_string(kMaxImageSide) + " per side and " +
                                       std::to_string(kMaxImagePixels) + " pixels)"));
  }
}

// PIL's alpha_composite of (v, a) over opaque white, 7-bit extra precision, divisions by 255 rounded.
inline uint8_t over_white(uint32_t v, uint32_t a) {
  if (a == 0) return 255;
  const uint32_t t = v * a * 128 + 255 * (255 - a) * 128 + (0x80 << 7);
  return static_cast<uint8_t>((((t >> 8) + t) >> 8) >> 7);
}

}  // namespace

Image::Image(int w, int h) {
  check_dims("image", w, h);
  width = w;
  height = h;
  data.assign(static_cast<size_t>(w) * h * 3, 0);
}

Image Image::from_rgb(const uint8_t* rgb, int w, int h) {
  Image im(w, h);
  std::copy_n(rgb, im.data.size(), im.data.begin());
  return im;
}

Image to_rgb(const uint8_t* data, int width, int height, int channels, AlphaMode alpha) {
  if (channels < 1 || channels > 4) {
    throw InvalidArgument("[image] to_rgb: " + std::to_string(channels) +
                          " channels; expected 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)");
  }
  check_dims("to_rgb", width, height);
  Image out(width, height);
  const size_t n = static_cast<size_t>(width) * height;
  uint8_t* o = out.data.data();
  const bool white = alpha == AlphaMode::White;
  switch (channels) {
    case 1:
      for (size_t i = 0; i < n; ++i) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = data[i];
      break;
    case 2:
      for (size_t i = 0; i < n; ++i) {
        const uint8_t v = white ? over_white(data[2 * i], data[2 * i + 1]) : data[2 * i];
        o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = v;
      }
      break;
    case 3: std::copy_n(data, 3 * n, o); break;
    case 4:
      for (size_t i = 0; i < n; ++i) {
        const uint8_t a = data[4 * i + 3];
        for (int c = 0; c < 3; ++c) o[3 * i + c] = white ? over_white(data[4 * i + c], a) : data[4 * i + c];
      }
      break;
  }
  return out;
}

const char* resample_name(Resample r) {
  switch (r) {
    case Resample::Nearest: return "nearest";
    case Resample::Lanczos: return "lanczos";
    case Resample::Bilinear: return "bilinear";
    case Resample::Bicubic: return "bicubic";
    case Resample::Box: return "box";
    case Resample::Hamming: return "hamming";
  }
  return "?";
}

Resample resample_from_code(int code) {
  if (code < 0 || code > 5) {
    throw InvalidArgument("[image] resample " + std::to_string(code) +
                          " is not a PIL filter code (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)");
  }
  return static_cast<Resample>(code);
}

const char* aspect_mode_name(AspectMode m) {
  return m == AspectMode::Pad ? "pad" : "crop";
}

AspectMode aspect_mode_from_name(const std::string& name) {
  if (name == "crop") return AspectMode::Crop;
  if (name == "pad") return AspectMode::Pad;
  throw InvalidArgument("[image] mode '" + name + "': expected 'crop' or 'pad'");
}

}  // namespace akvq
