// Public C++ API of image input: an owned 8-bit RGB Image, decoding (PNG via libpng, JPEG via
// libjpeg; format found by magic bytes), and the preprocessing that turns an image into the
// normalized pixels a CLIP vision tower consumes, as Hugging Face's CLIPImageProcessor (the
// PIL-based one) computes them:
//
//   RGB conversion -> [pad to square with the mean colour]   (mode Pad: LLaVA-1.5's expand2square)
//   -> resize the shortest side to image_size (PIL's resampling filters, bit-exact uint8)
//   -> center crop crop_height x crop_width (zero padding where the crop exceeds the image)
//   -> x / 255 -> (x - mean) / std, float CHW [3, crop_height, crop_width].
//
// Decoding applies no EXIF orientation, gamma or colour profile (neither PIL's open nor
// transformers does). Errors are typed (akvq/error.h): InvalidArgument (bad image or config),
// FormatError (corrupt, truncated or unsupported file), IoError (file unreadable), Unavailable (a
// codec this build lacks).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace akvq {

// Limits on every image the engine accepts or makes (decoded, converted, resized, cropped).
// kMaxImagePixels is Pillow's decompression-bomb error threshold (2 x 89,478,485 pixels).
constexpr int kMaxImageSide = 65535;
constexpr int64_t kMaxImagePixels = 178956970;
// Bytes of an image file load_image reads at most (2 GiB: more than a PNG or JPEG within
// kMaxImagePixels needs, 16-bit RGBA stored uncompressed being ~1.4 GB).
constexpr int64_t kMaxImageFileBytes = int64_t{1} << 31;

// An owned 8-bit RGB image. data: [height, width, 3], rows top to bottom, channels R, G, B.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> data;  // [height, width, 3]

  Image() = default;
  // Zero-filled (black) image; throws InvalidArgument for sizes outside [1, kMaxImageSide] or
  // more than kMaxImagePixels pixels.
  Image(int width, int height);
  // Copies pixels [height, width, 3] after the same checks.
  static Image from_rgb(const uint8_t* rgb, int width, int height);

  bool empty() const { return width == 0 || height == 0; }
  uint8_t* row(int y) { return data.data() + static_cast<size_t>(y) * width * 3; }
  const uint8_t* row(int y) const { return data.data() + static_cast<size_t>(y) * width * 3; }
};

// How transparency becomes RGB.
//   White: composite onto an opaque white background with PIL's alpha_composite integer rounding
//          (what transformers' convert_to_rgb does for images with an alpha band or a
//          transparency key, transformers >= 5; exact for every (value, alpha) pair).
//   Drop:  ignore alpha (PIL's convert("RGB"): the original LLaVA code and transformers 4.x).
enum class AlphaMode { White, Drop };

// Converts interleaved 8-bit pixels with 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)
// channels, data [height, width, channels], to RGB. Gray is replicated to R, G and B.
Image to_rgb(const uint8_t* data, int width, int height, int channels, AlphaMode alpha = AlphaMode::White);

// PIL's resampling filter codes (Image.Resampling).
enum class Resample : int { Nearest = 0, Lanczos = 1, Bilinear = 2, Bicubic = 3, Box = 4, Hamming = 5 };
// "nearest", "lanczos", "bilinear", "bicubic", "box", "hamming".
const char* resample_name(Resample r);
// Accepts the PIL code (0..5); throws InvalidArgument naming the value otherwise.
Resample resample_from_code(int code);

// Aspect handling before the resize: Crop (Hugging Face's CLIP processor: resize the shortest
// side, then center crop) or Pad (LLaVA-1.5: pad to a square with the mean colour first).
enum class AspectMode { Crop, Pad };
const char* aspect_mode_name(AspectMode m);                 // "crop" | "pad"
AspectMode aspect_mode_from_name(const std::string& name);  // throws InvalidArgument

// The facts a model file carries about its image preprocessing (defaults: LLaVA-1.5 / CLIP-L 336).
struct PreprocessConfig {
  int image_size = 336;   // the shortest side after the resize (HF size["shortest_edge"])
  int crop_height = 336;  // HF crop_size["height"]
  int crop_width = 336;   // HF crop_size["width"]
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};  // of the [0, 1] pixels
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
  double rescale_factor = 1.0 / 255.0;  // HF rescale_factor (applied in double, then float32)
  Resample resample = Resample::Bicubic;
  AspectMode mode = AspectMode::Crop;
  AlphaMode alpha = AlphaMode::White;  // used where the input still has alpha (decoding, to_rgb)
  // Mode Pad's colour when a model file states it (akvq.vision.pad_color); else int(255 * mean).
  std::optional<std::array<uint8_t, 3>> pad_color_override;

  // Throws InvalidArgument naming the field: sizes outside [1, 8192], std <= 0 or not finite,
  // mean not finite, rescale_factor <= 0 or not finite.
  void validate() const;
  // The padding colour of mode Pad: pad_color_override when set, else int(255 * mean) per channel
  // as LLaVA-1.5 and transformers compute it (truncation; (122, 116, 104) for the CLIP mean).
  std::array<uint8_t, 3> pad_color() const;
  size_t n_values() const { return static_cast<size_t>(3) * crop_height * crop_width; }
};

// The whole pipeline (see the top of this file). Returns float [3, crop_height, crop_width]
// (channel-major: R plane, G plane, B plane; each plane row-major, top row first), the layout of
// one image of VisionModel::encode's `pixels`. Throws InvalidArgument for an empty image or a bad
// config.
std::vector<float> preprocess(const Image& image, const PreprocessConfig& config);

// ---- decoding ----
enum class ImageFormat { Unknown, Png, Jpeg, Gif, Bmp, Webp, Tiff };
const char* image_format_name(ImageFormat f);  // "PNG", "JPEG", ...
// The format announced by the first bytes (magic numbers), whatever the file is called.
ImageFormat detect_image_format(const uint8_t* data, size_t size);
// Whether this build can decode the format (PNG needs libpng, JPEG libjpeg at build time).
bool can_decode(ImageFormat f);

// Decodes a PNG or JPEG held in memory and converts it to RGB (alpha as `alpha` says). `name`
// (e.g. the path) only labels error messages. Throws FormatError (empty, corrupt, truncated,
// unsupported format, larger than the limits above) or Unavailable (a codec this build lacks).
Image decode_image(const uint8_t* data, size_t size, AlphaMode alpha = AlphaMode::White, const std::string& name = "");
// Reads the whole file, then decode_image. IoError when it cannot be read.
Image load_image(const std::string& path, AlphaMode alpha = AlphaMode::White);

}  // namespace akvq
