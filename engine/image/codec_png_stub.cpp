// PNG decoding in a build without libpng (CMake compiles this file instead of codec_png.cpp).
#include "akvq/error.h"
#include "image/codec.h"

namespace akvq::image {

bool png_available() {
  return false;
}

Decoded decode_png(const uint8_t*, size_t, const std::string& name) {
  throw Unavailable("[image] " + (name.empty() ? std::string("<memory>") : name) +
                    ": this build cannot read PNG images (built without libpng; install libpng-dev and rebuild)");
}

}  // namespace akvq::image
