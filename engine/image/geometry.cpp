// Center crop (transformers' offsets and zero padding) and pad to square (LLaVA-1.5).
#include "image/geometry.h"

#include <algorithm>
#include <string>

#include "akvq/error.h"

namespace akvq::image {

namespace {
int floor_half(int v) {
  return v >= 0 ? v / 2 : -((-v + 1) / 2);
}  // Python's v // 2
}  // namespace

CropOffsets center_crop_offsets(int height, int width, int crop_height, int crop_width) {
  return {floor_half(height - crop_height), floor_half(width - crop_width)};
}

Image center_crop(const Image& src, int crop_height, int crop_width) {
  if (src.empty()) throw InvalidArgument("[image] center_crop: empty image");
  Image out(crop_width, crop_height);  // checks the crop size
  const CropOffsets o = center_crop_offsets(src.height, src.width, crop_height, crop_width);
  const int j0 = std::max(0, -o.left), j1 = std::min(crop_width, src.width - o.left);  // columns inside
  if (j1 <= j0) return out;
  for (int i = 0; i < crop_height; ++i) {
    const int y = i + o.top;
    if (y < 0 || y >= src.height) continue;
    std::copy(src.row(y) + static_cast<size_t>(j0 + o.left) * 3, src.row(y) + static_cast<size_t>(j1 + o.left) * 3,
              out.row(i) + static_cast<size_t>(j0) * 3);
  }
  return out;
}

Image pad_to_square(const Image& src, const std::array<uint8_t, 3>& color) {
  if (src.empty()) throw InvalidArgument("[image] pad_to_square: empty image");
  if (src.width == src.height) return src;
  const int side = std::max(src.width, src.height);
  if (static_cast<int64_t>(side) * side > kMaxImagePixels) {
    throw InvalidArgument("[image] pad mode: the " + std::to_string(src.width) + "x" + std::to_string(src.height) +
                          " image padded to a square would be " + std::to_string(side) + "x" + std::to_string(side) +
                          " pixels, more than the limit of " + std::to_string(kMaxImagePixels) +
                          " pixels; resize the image first");
  }
  Image out(side, side);
  for (size_t p = 0; p < out.data.size(); p += 3) std::copy(color.begin(), color.end(), out.data.begin() + p);
  const int x0 = (side - src.width) / 2, y0 = (side - src.height) / 2;
  for (int y = 0; y < src.height; ++y) {
    std::copy_n(src.row(y), static_cast<size_t>(src.width) * 3, out.row(y0 + y) + static_cast<size_t>(x0) * 3);
  }
  return out;
}

}  // namespace akvq::image
