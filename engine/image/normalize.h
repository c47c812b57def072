// Rescale + normalize: uint8 RGB [height, width, 3] -> float CHW [3, height, width].
#pragma once
#include <array>

#include "akvq/image.h"

namespace akvq::image {

// out[c, y, x] = (float(p * rescale) - mean[c]) / std[c] with p the uint8 value, the product in
// double and rounded once to float, the rest in float: transformers' rescale (float64 multiply,
// cast to float32) followed by its normalize (float32 subtract and divide), bit for bit.
// out: [3, img.height, img.width].
void normalize_chw(const Image& img, const std::array<float, 3>& mean, const std::array<float, 3>& std, double rescale,
                   float* out);

}  // namespace akvq::image
