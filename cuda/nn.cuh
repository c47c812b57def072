// Model ops on the GPU, f32 activations, row-major (innermost dimension last), formulas of the
// CPU engine's ops (engine/ops/ops.h; per-element arithmetic in nn_math.cuh). Each launches on
// `stream` and returns cudaErrorInvalidValue for shapes it does not serve.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "nn_math.cuh"
#include "weights.cuh"

namespace akvq_cuda {

// y[n_tok, n] = x / sqrt(mean(x²) + eps) · w (w may be null); in place allowed.
cudaError_t rms_norm(const float* x, const float* w, int64_t n_tok, int64_t n, float eps, float* y,
                     cudaStream_t stream);
// y[n_tok, n] = (x − mean) / sqrt(var + eps) · w + b (biased variance; w, b may be null).
cudaError_t layer_norm(const float* x, const float* w, const float* b, int64_t n_tok, int64_t n, float eps, float* y,
                       cudaStream_t stream);
// In place on x[n_tok, n_head, head_dim]: the first n_rot dims of each head rotated by pos[t];
// freq_scale and freq_factors (device [n_rot/2], or null) as ops::RopeScaling.
cudaError_t rope(float* x, int64_t n_tok, int n_head, int head_dim, int n_rot, const int32_t* pos, float theta,
                 float freq_scale, const float* freq_factors, bool half_split, cudaStream_t stream);
// out[n] = silu(gate) · up (in place allowed).
cudaError_t swiglu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream);
// x[n] += y[n]
cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream);
// x[n_tok, n] += b[n]
cudaError_t add_bias(float* x, const float* b, int64_t n_tok, int64_t n, cudaStream_t stream);
// In place on x[n].
cudaError_t activation(Act a, float* x, int64_t n, cudaStream_t stream);
// out[n_ids, ne0] = rows ids[i] of the table (n_rows rows of ne0 values of type t), dequantized.
// ids outside [0, n_rows) give zero rows (the caller validates ids on the host first).
cudaError_t get_rows(WType t, const uint8_t* table, int64_t ne0, int64_t n_rows, const int32_t* ids, int64_t n_ids,
                     float* out, cudaStream_t stream);

// amax[n_tok] = max |x| over each row of x[n_tok, n].
cudaError_t row_absmax(const float* x, int64_t n_tok, int64_t n, float* amax, cudaStream_t stream);
// y[n] = fp16(x[n]) (round to nearest even).
cudaError_t f32_to_f16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);

}  // namespace akvq_cuda
