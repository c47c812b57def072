// Matmul on the stored weight types: y[n_tok, n_out] = x[n_tok, n_in] · Wᵀ with W [n_out, n_in]
// as stored in the GGUF file (f32, f16, bf16, q4_0, q4_1, q8_0, q4_K, q6_K rows; no dequantized
// copy). One warp per output row streams the row's blocks once for up to 8 tokens (each lane
// dequantizes chunks of 32 values with weights.cuh); more tokens run in passes of 8. Each token's
// sum has a fixed order (lane partials over the row's chunks, explicit FMAs, then a warp tree), so
// a row's result is the same bits whatever n_tok: batch-invariant like the CPU kernels. Decode
// is memory-bound; prefill re-reads the weights once per 8 tokens (a tensor-core path with the
// same invariance is still to come). Accumulation in f32.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "weights.cuh"

namespace akvq_cuda {

struct MatmulArgs {
  WType type = WType::F32;
  const uint8_t* w = nullptr;   // [n_out rows of wtype_row_bytes(type, n_in) bytes]
  int64_t n_in = 0, n_out = 0;  // n_in a multiple of 32 (and of 256 for the K-quants)
  const float* x = nullptr;     // [n_tok, n_in], 16-byte aligned
  int64_t n_tok = 0;
  float* y = nullptr;  // [n_tok, n_out]
};

// Launches on `stream`; cudaErrorInvalidValue for a type or shape the kernels do not serve.
cudaError_t matmul(const MatmulArgs& args, cudaStream_t stream);

}  // namespace akvq_cuda
