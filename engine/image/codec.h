// The codecs behind decode_image: decoded pixels before RGB conversion.
//
// PNG (libpng): palette expanded to RGB, gray below 8 bits expanded to 8, 16-bit samples reduced
// to their high byte (PIL's RGB;16B unpacking), a tRNS transparency key expanded to an alpha
// channel; no gamma or colour-profile conversion (PIL applies none).
// JPEG (libjpeg): default decoder settings (integer slow IDCT, fancy upsampling), as PIL; gray
// stays gray, YCbCr/RGB become RGB, CMYK/YCCK come out as the 4 Adobe-inverted CMYK samples
// that the caller converts as PIL does. A file that ends before its last scanline is an error
// (libjpeg would pad it with gray and warn; PIL refuses truncated files too).
//
// Errors inside the C libraries unwind with longjmp into a small C-style frame of the codec that
// owns no C++ objects; the C++ caller then throws. Each codec file builds only when CMake found
// its library; otherwise its stub throws Unavailable.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace akvq::image {

struct Decoded {
  int width = 0;
  int height = 0;
  int channels = 0;           // 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA (PNG) or inverted CMYK (JPEG)
  bool cmyk = false;          // JPEG CMYK/YCCK: channels are 255 - C, M, Y, K
  std::vector<uint8_t> data;  // [height, width, channels]
};

bool png_available();
bool jpeg_available();
// `name` labels error messages. Throw FormatError (corrupt, truncated, over the size limits) or
// Unavailable (stubs).
Decoded decode_png(const uint8_t* data, size_t size, const std::string& name);
Decoded decode_jpeg(const uint8_t* data, size_t size, const std::string& name);

// Throws FormatError when a decoded size is outside the limits of akvq/image.h.
void check_decoded_size(const char* format, const std::string& name, uint64_t width, uint64_t height);

}  // namespace akvq::image
