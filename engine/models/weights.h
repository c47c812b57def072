// Binding model weights from a GGUF file: shape, type and data-length checks shared by the
// architectures (llama, clip, llava). Every failure throws FormatError "<tag> tensor '...': ...".
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace akvq {
namespace gguf {
class File;
}

namespace models {

// Finds `name` and checks its exact shape (ne innermost first, trailing dims 1), that its rows
// are whole blocks of its type and that its data is all there. f32_only: the type must be F32
// (norm weights, biases). load_only_ok: a load-only type (core/dtype.h) is accepted, for a
// caller that converts it (requantize_q8_0); otherwise it is refused naming the tensor and type.
// tag prefixes the error messages, e.g. "[llama]".
TensorView bind_tensor(const gguf::File& f, const std::string& tag, const std::string& name,
                       std::initializer_list<int64_t> ne, bool f32_only, bool load_only_ok = false);

// A weight of a load-only type (Q5_0, Q5_1, Q5_K, IQ4_NL) requantized to Q8_0 in `store`, to which
// w then points; other types are left alone. Per block of 32 values: d = max|x| / 127 (stored as
// fp16), q = round(x * (1 / d)) (halves away from zero), as llama.cpp's Q8_0 quantizer. Costs 34 bytes per 32 values (Q5_0: 22) and adds
// at most d/2 per value, below the 5-bit types' own step.
void requantize_q8_0(TensorView& w, std::vector<uint8_t>& store);

// The tensor `name` holding exactly n values of any supported type, dequantized to f32 (biases,
// norms, embeddings read once at load). Shape: any whose elements number n.
std::vector<float> load_f32(const gguf::File& f, const std::string& tag, const std::string& name, int64_t n);

// "{a, b}" of the first n_dims sizes (for messages).
std::string shape_str(const TensorView& t);

}  // namespace models
}  // namespace akvq
