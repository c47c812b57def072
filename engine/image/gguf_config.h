// The preprocessing a model file describes (keys written by pyakvq's converter, see
// models/convert/README.md; llama.cpp's mmproj files carry only the clip.vision.* ones).
#pragma once
#include "akvq/image.h"

namespace akvq {
namespace gguf {
class File;
}

namespace image {

// PreprocessConfig from the file's keys:
//   clip.vision.image_size (required)   -> crop_height = crop_width
//   akvq.vision.resize_shortest_edge     -> image_size (default: clip.vision.image_size)
//   clip.vision.image_mean / image_std   -> mean / std (default: CLIP's)
//   akvq.vision.resample                 -> "nearest" | "lanczos" | "bilinear" | "bicubic" | "box" |
//                                           "hamming" (default bicubic)
//   akvq.vision.rescale_factor (f32)     -> rescale_factor (default 1/255; a stored float(1/255) is
//                                           read as the double 1/255 transformers multiplies by)
//   akvq.vision.pad_mode                 -> "crop" | "pad"; absent: `absent_mode`
//   akvq.vision.pad_color (i32[3])       -> pad_color_override (pad mode)
// Throws FormatError naming the file and key for a bad value.
// absent_mode: what a file without akvq.vision.pad_mode gets; llama.cpp's LLaVA-1.5 files do not
// say, and LLaVA-1.5 was trained with pad-to-square, so callers pass Pad for those.
PreprocessConfig preprocess_config_from_gguf(const gguf::File& f, AspectMode absent_mode = AspectMode::Pad);

}  // namespace image
}  // namespace akvq
