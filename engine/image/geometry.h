// Geometry of the preprocessing: Hugging Face's center crop and LLaVA-1.5's pad to square.
#pragma once
#include <array>
#include <cstdint>

#include "akvq/image.h"

namespace akvq::image {

// Where a center crop of crop_height x crop_width takes its pixels from an image of
// height x width: output pixel (i, j) is input pixel (i + top, j + left) when that lies inside the
// image, else black (0). top = floor((height - crop_height) / 2), left likewise: transformers'
// center_crop, including the case where the crop is larger than the image (the image then sits at
// ceil((crop - size) / 2) from the top/left edge, zeros around it).
struct CropOffsets {
  int top = 0;
  int left = 0;
};
CropOffsets center_crop_offsets(int height, int width, int crop_height, int crop_width);

// The center crop itself (black where it extends past the image).
Image center_crop(const Image& src, int crop_height, int crop_width);

// LLaVA-1.5's expand2square (and transformers' LlavaImageProcessor pad_to_square): a square of
// side max(width, height) filled with `color`, the image pasted at ((side - width) / 2,
// (side - height) / 2) (floor). A square image is returned as it is. Throws InvalidArgument when
// the square exceeds kMaxImagePixels.
Image pad_to_square(const Image& src, const std::array<uint8_t, 3>& color);

}  // namespace akvq::image
