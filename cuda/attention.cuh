// Attention over f32 or fp16 K/V rows, causal or not, for the vision tower on the GPU (it runs on
// the CPU for now; the decoder's caches attend with kv_attend): out = softmax(scale · q·Kᵀ) · V
// per query and head, GQA by head groups.
// One warp per (query, head): tiles of 32 keys scored a key per lane, one online softmax, values
// accumulated with the lanes over the dimensions (as kv_attend.cu, without splits).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace akvq_cuda {

struct AttentionArgs {
  const float* q = nullptr;  // [n_q, n_head, head_dim]
  const void* k = nullptr;   // [n_kv, n_head_kv, head_dim], f32 or fp16 (kv_f16)
  const void* v = nullptr;
  bool kv_f16 = false;
  int64_t n_q = 0, n_kv = 0;
  int n_head = 0, n_head_kv = 0, head_dim = 0;  // n_head a multiple of n_head_kv; head_dim <= 256
  float scale = 1.0f;
  bool causal = true;    // query i sees keys [0, n_kv − n_q + i]; else all keys
  float* out = nullptr;  // [n_q, n_head, head_dim]
};

cudaError_t attention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace akvq_cuda
