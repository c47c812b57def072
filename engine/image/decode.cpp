// decode_image / load_image: format by magic bytes, the codec, then RGB conversion.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "akvq/image.h"
#include "image/codec.h"

namespace akvq {

namespace {

std::string label(const std::string& name) {
  return name.empty() ? "<memory>" : name;
}

bool starts_with(const uint8_t* d, size_t n, const char* magic, size_t len, size_t at = 0) {
  return n >= at + len && std::memcmp(d + at, magic, len) == 0;
}

// PIL's JPEG CMYK: samples are read as Adobe-inverted (C = 255 - stored), then converted with
// R = (255 - K) - (C * (255 - K)) / 255 (division rounded), likewise G from M and B from Y.
Image cmyk_to_rgb(const image::Decoded& d) {
  Image out(d.width, d.height);
  const size_t n = static_cast<size_t>(d.width) * d.height;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &d.data[4 * i];
    const int nk = p[3];  // 255 - K with K = 255 - stored
    for (int c = 0; c < 3; ++c) {
      const int t = (255 - p[c]) * nk + 128;
      const int v = nk - (((t >> 8) + t) >> 8);
      out.data[3 * i + c] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
  }
  return out;
}

}  // namespace

namespace image {

void check_decoded_size(const char* format, const std::string& name, uint64_t width, uint64_t height) {
  if (width == 0 || height == 0) {
    throw FormatError("[image] " + label(name) + ": " + format + " has zero size (" + std::to_string(width) + "x" +
                      std::to_string(height) + ")");
  }
  if (width > static_cast<uint64_t>(kMaxImageSide) || height > static_cast<uint64_t>(kMaxImageSide) ||
      width * height > static_cast<uint64_t>(kMaxImagePixels)) {
    throw FormatError("[image] " + label(name) + ": " + format + " of " + std::to_string(width) + "x" +
                      std::to_string(height) + " pixels is larger than the limit (" + std::to_string(kMaxImageSide) +
                      " per side, " + std::to_string(kMaxImagePixels) + " pixels)");
  }
}

}  // namespace image

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::Gif: return "GIF";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Webp: return "WebP";
    case ImageFormat::Tiff: return "TIFF";
    case ImageFormat::Unknown: break;
  }
  return "unknown";
}

ImageFormat detect_image_format(const uint8_t* d, size_t n) {
  if (starts_with(d, n, "\x89PNG\r\n\x1a\n", 8)) return ImageFormat::Png;
  if (starts_with(d, n, "\xff\xd8\xff", 3)) return ImageFormat::Jpeg;
  if (starts_with(d, n, "GIF87a", 6) || starts_with(d, n, "GIF89a", 6)) return ImageFormat::Gif;
  if (starts_with(d, n, "BM", 2)) return ImageFormat::Bmp;
  if (starts_with(d, n, "RIFF", 4) && starts_with(d, n, "WEBP", 4, 8)) return ImageFormat::Webp;
  if (starts_with(d, n, "II*\0", 4) || starts_with(d, n, "MM\0*", 4)) return ImageFormat::Tiff;
  return ImageFormat::Unknown;
}

bool can_decode(ImageFormat f) {
  if (f == ImageFormat::Png) return image::png_available();
  if (f == ImageFormat::Jpeg) return image::jpeg_available();
  return false;
}

Image decode_image(const uint8_t* data, size_t size, AlphaMode alpha, const std::string& name) {
  if (size == 0 || data == nullptr) throw FormatError("[image] " + label(name) + ": empty image data (0 bytes)");
  const ImageFormat f = detect_image_format(data, size);
  image::Decoded d;
  if (f == ImageFormat::Png) {
    d = image::decode_png(data, size, name);
  } else if (f == ImageFormat::Jpeg) {
    d = image::decode_jpeg(data, size, name);
  } else if (f == ImageFormat::Unknown) {
    throw FormatError("[image] " + label(name) + ": not a PNG or JPEG image (unrecognized first bytes)");
  } else {
    throw FormatError("[image] " + label(name) + ": " + image_format_name(f) +
                      " images are not supported (PNG and JPEG are; convert the image first)");
  }
  if (d.cmyk) return cmyk_to_rgb(d);
  return to_rgb(d.data.data(), d.width, d.height, d.channels, alpha);
}

Image load_image(const std::string& path, AlphaMode alpha) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    throw IoError("[image] cannot open '" + path + "': " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw IoError("[image] cannot read '" + path + "': it is a directory");
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) throw IoError("[image] cannot open '" + path + "': " + std::strerror(errno));
  // The first bytes name the format, so that what is no PNG or JPEG (a large file of something
  // else, an endless device such as /dev/zero) is refused before the rest is read; the rest is
  // read up to kMaxImageFileBytes.
  std::vector<uint8_t> bytes;
  if (S_ISREG(st.st_mode) && st.st_size > 0) {
    bytes.reserve(static_cast<size_t>(std::min<int64_t>(st.st_size, kMaxImageFileBytes) + 1));
  }
  uint8_t buf[1 << 16];
  size_t got = 0;
  bool known = false, too_large = false;
  while ((got = std::fread(buf, 1, known ? sizeof(buf) : 16 - bytes.size(), fp)) > 0) {
    bytes.insert(bytes.end(), buf, buf + got);
    if (!known && bytes.size() >= 16) {
      const ImageFormat f = detect_image_format(bytes.data(), bytes.size());
      if (f != ImageFormat::Png && f != ImageFormat::Jpeg) break;  // decode_image names the problem
      known = true;
    }
    if (static_cast<int64_t>(bytes.size()) > kMaxImageFileBytes) {
      too_large = true;
      break;
    }
  }
  const bool failed = std::ferror(fp) != 0;
  const int err = errno;
  std::fclose(fp);
  if (failed) throw IoError("[image] cannot read '" + path + "': " + std::strerror(err));
  if (bytes.empty()) throw FormatError("[image] " + path + ": empty file (0 bytes)");
  if (too_large) {
    throw FormatError("[image] " + path + ": larger than the limit of " + std::to_string(kMaxImageFileBytes) +
                      " bytes for an image file");
  }
  return decode_image(bytes.data(), bytes.size(), alpha, path);
}

}  // namespace akvq
