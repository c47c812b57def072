// Scalar reference implementations of every op in ops.h. They are written for clarity, not speed:
// the SIMD paths are tested against them, and the quantized matmul falls back to the ref dot
// kernels when no SIMD ISA is compiled in.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/ops.h"
#include "ops/qblocks.h"

namespace akvq::ops::ref {

// out[n] = dequantized src (n a multiple of the block size). Bit-exact with gguf.quants.dequantize
// (no fused multiply-add: this file is compiled without contraction).
void dequantize_row(DType t, const void* src, float* out, int64_t n);

// Activation quantization used by the quantized matmul (formats in qblocks.h). n must be a
// multiple of 32 / 256. qmax: kActQ16Max (16-bit levels) or kActQ8Max (8-bit levels, the same
// format with |q| <= 127).
void quantize_row_q16(const float* x, void* out_row, int64_t n, int qmax = kActQ16Max);  // act_q16_row_bytes(n) bytes
void quantize_row_q16k(const float* x, ActQ16K* out, int64_t n, int qmax = kActQ16Max);  // out[n/256]
// The qmax the matmul uses for weight w (TensorView::act_bits: 8 -> kActQ8Max, else kActQ16Max).
inline int act_qmax(const TensorView& w) {
  return w.act_bits == 8 ? kActQ8Max : kActQ16Max;
}

// The activation format a weight type is multiplied with.
enum class ActKind { F32, Q16, Q16K };
ActKind act_kind(DType t);

// Dot product of one weight row (n values of type t) with one activation row in the matching
// format (f32 for float weights, a Q16 row or ActQ16K[n/256] otherwise). Exact integer sums inside
// each block (super-block for the K-quants), f32 accumulation across blocks.
float vec_dot(DType t, const void* w_row, const void* x_act, int64_t n);

// y[n_tok, n_out] = x[n_tok, n_in] · Wᵀ computed with the same activation quantization as the
// fast path (quantize_row_q16/q16k, then vec_dot).
void matmul_quant(const TensorView& w, const float* x, int64_t n_tok, float* y);
// y[n_tok, n_out] = x · dequant(W)ᵀ in f32 with double accumulation (no activation rounding).
void matmul_f32(const TensorView& w, const float* x, int64_t n_tok, float* y);

void get_rows(const TensorView& w, const int32_t* ids, int64_t n, float* out);
void rms_norm(const float* x, const float* w, int64_t n_tok, int64_t n, float eps, float* y);
// Angles computed in double: pos * freq_scale * theta^(-2i/n_rot) / freq_factors[i].
void rope(float* x, int64_t n_tok, int n_head, int head_dim, int n_rot, const int32_t* pos, float theta, RopeMode mode,
          const RopeScaling& scaling = {});
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void add_inplace(float* x, const float* y, int64_t n);
void softmax(float* x, int64_t n);
float dot_f16(const float* x, const uint16_t* y, int64_t n);
void axpy_f16(float a, const uint16_t* x, float* y, int64_t n);
void f32_to_f16_row(const float* x, uint16_t* y, int64_t n);

// Vision-transformer ops (ref_nn.cpp): double accumulation, std::erf / std::exp in double.
void layer_norm(const float* x, const float* w, const float* b, int64_t n_tok, int64_t n, float eps, float* y);
void add_bias(float* x, const float* b, int64_t n_tok, int64_t n);
void gelu(float* x, int64_t n);
void quick_gelu(float* x, int64_t n);
void activation(Activation a, float* x, int64_t n);
void attention(const float* q, const float* k, const float* v, int n_seq, int seq_len, int n_head, int head_dim,
               float scale, float* out);

}  // namespace akvq::ops::ref
