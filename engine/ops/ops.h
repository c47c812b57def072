// The op interface used by models. Each op has a scalar reference (ops/ref.h) and backend
// implementations; this header dispatches to the CPU backend (SIMD where available).
// All activations are f32, row-major, innermost dimension last in the shape comments.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "core/tensor.h"
#include "cpu/thread_pool.h"

namespace akvq::ops {

// y[n_tok, n_out] = x[n_tok, n_in] · Wᵀ, where w is a weight with ne = {n_in, n_out} of any
// supported type. Works directly on the quantized rows (no dequantized copy of w).
void matmul(const TensorView& w, const float* x, int64_t n_tok, float* y, cpu::ThreadPool& pool);

// Several matmuls of the same x (e.g. Q/K/V, gate/up; at most 4): y_i[n_tok, rows of w_i] =
// x · w_iᵀ. x is quantized once and all the tiles share one pass of the thread pool when the
// weights share type and inner size (else one matmul each); each y_i is exactly matmul's.
struct MatmulTarget {
  const TensorView* w;
  float* y;
};
void matmul_group(std::initializer_list<MatmulTarget> targets, const float* x, int64_t n_tok, cpu::ThreadPool& pool);

// out[n, ne0] = rows ids[n] of table w (ne = {ne0, n_rows}), dequantized. Throws
// InvalidArgument for an id outside [0, n_rows).
void get_rows(const TensorView& w, const int32_t* ids, int64_t n, float* out);

// Dequantize n values (a multiple of the type's block size) of raw type t into out.
void dequantize_row(DType t, const void* src, float* out, int64_t n);

// y[n_tok, n] = x / rms(x) * w ; w may be nullptr (no weight). In-place allowed (y == x).
void rms_norm(const float* x, const float* w, int64_t n_tok, int64_t n, float eps, float* y);

enum class RopeMode { AdjacentPairs, HalfSplit };  // llama.cpp 'llama' files / NeoX & HF style

// Context-extension scaling of the RoPE frequencies, llama.cpp's convention: pair i turns by
// pos · freq_scale · theta^(-2i/n_rot) / freq_factors[i].
struct RopeScaling {
  float freq_scale = 1.0f;              // 1 / rope.scaling.factor (type linear; HF rope_type "linear")
  const float* freq_factors = nullptr;  // [n_rot/2] tensor rope_freqs.weight (HF rope_type "llama3"), or none
};

// In place on x[n_tok, n_head, head_dim]: rotate the first n_rot dims of each head by position
// pos[t] with frequencies theta^(-2i/n_rot), scaled as `scaling` says.
void rope(float* x, int64_t n_tok, int n_head, int head_dim, int n_rot, const int32_t* pos,
          float theta, RopeMode mode, const RopeScaling& scaling = {});

// out[n] = silu(gate) * up ; in-place allowed (out == gate).
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// x[n] += y[n]
void add_inplace(float* x, const float* y, int64_t n);

// In place softmax over x[n].
void softmax(float* x, int64_t n);

// dot / axpy helpers used by attention: f32 query against fp16 rows.
float dot_f16(const float* x, const uint16_t* y, int64_t n);
void axpy_f16(float a, const uint16_t* x, float* y, int64_t n);  // y += a * x
void f32_to_f16_row(const float* x, uint16_t* y, int64_t n);

// --- Vision-transformer ops (ops/nn.cpp, ops/attention.cpp). Rows are split over the pool; a
// row's result never depends on how many rows come with it (batch-invariant).

// y[n_tok, n] = (x - mean) / sqrt(var + eps) * w + b per row, var the biased variance (LayerNorm);
// w and b may be nullptr (1 and 0). In place allowed (y == x).
void layer_norm(const float* x, const float* w, const float* b, int64_t n_tok, int64_t n, float eps, float* y,
                cpu::ThreadPool& pool);

// x[n_tok, n] += b[n] for every row.
void add_bias(float* x, const float* b, int64_t n_tok, int64_t n, cpu::ThreadPool& pool);

// In place on x[n_tok, n]: GELU, exact erf form 0.5 x (1 + erf(x / sqrt 2)).
void gelu(float* x, int64_t n_tok, int64_t n, cpu::ThreadPool& pool);
// In place on x[n_tok, n]: quick GELU, x * sigmoid(1.702 x).
void quick_gelu(float* x, int64_t n_tok, int64_t n, cpu::ThreadPool& pool);

// The activations of vision towers and projectors, by transformers' names: gelu (erf),
// gelu_pytorch_tanh (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))), quick_gelu, silu, relu.
enum class Activation { Gelu, GeluTanh, QuickGelu, Silu, Relu };
// The Activation of a name (false for an unknown name), and the name of an Activation.
bool activation_from_name(const char* name, Activation* out);
const char* activation_name(Activation a);
// In place on x[n_tok, n].
void activation(Activation a, float* x, int64_t n_tok, int64_t n, cpu::ThreadPool& pool);

// Non-causal multi-head attention within each of n_seq independent sequences of seq_len rows:
// q, k, v, out: [n_seq * seq_len, n_head * head_dim] (head h at columns h * head_dim ...).
// out[s, i, h] = softmax_j(scale * q[s, i, h] . k[s, j, h]) . v[s, j, h] over j < seq_len.
void attention(const float* q, const float* k, const float* v, int n_seq, int seq_len, int n_head, int head_dim,
               float scale, float* out, cpu::ThreadPool& pool);

}  // namespace akvq::ops
