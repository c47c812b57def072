// Matmul on the stored weight types: y[n_tok, n_out] = x[n_tok, n_in] · Wᵀ with W [n_out, n_in]
// as stored in the GGUF file (f32, f16, bf16, q4_0, q4_1, q8_0, q4_K, q6_K rows; no dequantized
// copy). Two paths, chosen by n_tok:
//   n_tok <= 8 (decode, GEMV): one warp per output row streams the row's blocks once for all
//     tokens (memory-bound; each lane dequantizes chunks of 32 values with weights.cuh);
//   larger (prefill, GEMM): 64 × 64 output tiles, 32-value chunks of W dequantized into shared
//     memory and multiplied in f32 (the tensor-core path is still to come).
// Accumulation is in f32; the result equals the CPU engine's within float summation error.
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
