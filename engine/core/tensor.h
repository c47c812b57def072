// A read-only view of a tensor stored in a model file (usually memory-mapped).
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace akvq {

struct TensorView {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // innermost first: a weight [n_out, n_in] has ne = {n_in, n_out}
  const void* data = nullptr;
  size_t nbytes = 0;
  // Optional copy of the same rows in a kernel-specific layout, made once at load by
  // ops::PackedWeights (ops/pack.h) and read only by the matmul when the active kernels read that
  // layout (`packing` names it, 0 = none); everything else reads `data` in the file's layout.
  const void* packed = nullptr;
  uint8_t packing = 0;
  // Precision of the activations a quantized matmul multiplies this weight with: 16 (default,
  // ops/qblocks.h Q16) or 8 (the same format with 8-bit levels: faster AVX-512 kernels, a little
  // less accurate). Set per model at load (ModelParams::act_bits).
  uint8_t act_bits = 16;

  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return akvq::row_bytes(type, ne[0]); }
  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_bytes(); }
};

}  // namespace akvq
