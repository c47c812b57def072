// JPEG decoding in a build without libjpeg (CMake compiles this file instead of codec_jpeg.cpp).
#include "akvq/error.h"
#include "image/codec.h"

namespace akvq::image {

bool jpeg_available() {
  return false;
}

Decoded decode_jpeg(const uint8_t*, size_t, const std::string& name) {
  throw Unavailable("[image] " + (name.empty() ? std::string("<memory>") : name) +
                    ": this build cannot read JPEG images (built without libjpeg; install libjpeg-dev and rebuild)");
}

}  // namespace akvq::image
