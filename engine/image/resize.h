// Resizing with PIL's algorithms (Image.resize without reducing_gap), bit-exact on uint8 RGB:
//
//   - convolution filters (bilinear, bicubic a = -0.5, lanczos-3, box, hamming): separable, two
//     passes; the horizontal one first (on the rows the vertical pass needs) unless the height
//     shrinks by more than twice as many pixels as the width (then the vertical one first: Pillow
//     >= 13.0; Pillow <= 12 always ran the horizontal pass first, which rounds differently in
//     those cases); a pass is skipped when that side keeps its length. Per output pixel the filter is centred at
//     (i + 0.5) * scale in input coordinates and its support is stretched by the downscale factor
//     (antialiasing); weights are normalized to sum 1, then quantized to 22-bit fixed point, and
//     each pass rounds (+ 2^21, >> 22) and clamps to [0, 255] before the next one.
//   - nearest: input index int(x0 + (i + 0.5) * scale) with the position accumulated in double
//     from one pixel to the next, as PIL's affine scaling does.
//   - same size: a copy.
//
// Compile with -ffp-contract=off (CMake does): fused multiply-adds would change the filter weights
// in their last bits, and with them some rounded pixels.
#pragma once
#include "akvq/image.h"

namespace akvq::image {

// (width, height) after resizing the shortest side to `shortest`, as transformers computes it
// (get_resize_output_image_size, default_to_square=False): the short side becomes `shortest`, the
// long one int(shortest * long / short) (truncated); a square stays square. Throws
// InvalidArgument when the result exceeds the image limits (kMaxImageSide, kMaxImagePixels is not
// checked here: callers resize windows).
void shortest_side_size(int width, int height, int shortest, int* out_width, int* out_height);

// A rectangle of an image: columns [x, x + width), rows [y, y + height).
struct Window {
  int x = 0, y = 0, width = 0, height = 0;
};

// src resized to out_width x out_height, only `win` of the result computed (each pixel is the
// one the full resize gives). win must lie inside [0, out_width) x [0, out_height).
Image resize_window(const Image& src, int out_width, int out_height, Resample r, const Window& win);

// The full resize.
Image resize(const Image& src, int out_width, int out_height, Resample r);

}  // namespace akvq::image
