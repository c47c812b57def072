// Fused append into the packed AKVQ cache: one launch rotates (WHT), rounds, quantizes into each
// row's precision class and writes codes + headers, or writes fp16 rows (window ring, pivots).
//
// A job moves one token (all its KV heads, K and V) from a source to a destination:
//   source       a new token t of k/v [n_new, n_head_kv, n] (K after RoPE; rotated here when
//                `rotate`, then rounded through fp16 when `round_f16`, as a token that passed
//                through the fp16 window is), or fp16 row r of k16_src/v16_src [*, n_head_kv, n]
//                (already rotated: a window slot or a displaced pivot)
//   destination  fp16 row r of k16_dst/v16_dst [*, n_head_kv, n], or packed row r of class c:
//                K of head h at k_seg[c] + h·seg_head_bytes[c].k + r·row_bytes (V alike)
// The packed layout is the CPU cache's (engine/kv/quant.h, kv_codec.cuh), so the bytes written
// here equal RowCodec::quantize of the same rotated row.
// Jobs of one launch must not read a row that another job of the launch writes: move the
// window slots out (fp16 sources) in one launch, then write the new tokens in the next.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kv_codec.cuh"

namespace akvq_cuda {

struct AppendJob {
  int32_t src_token = -1;  // >= 0: new token index; -1: fp16 source row src_row
  int32_t round_f16 = 0;   // new tokens only: round the rotated values through fp16 first
  int64_t src_row = 0;     // fp16 source row (src_token == -1)
  int32_t dst_class = -1;  // -1: fp16 destination row; 0 or 1: packed class
  int32_t pad = 0;
  int64_t dst_row = 0;  // row index in the destination
};

struct AppendClass {
  RowSpec k, v;                     // k.n == v.n == head_dim
  const float* k_levels = nullptr;  // device level tables (Gaussian; uniform: unused)
  const float* v_levels = nullptr;
  uint8_t* k_seg = nullptr;  // [n_head_kv][head_stride_k bytes]
  uint8_t* v_seg = nullptr;
  int64_t head_stride_k = 0, head_stride_v = 0;
};

struct AppendArgs {
  int n_head_kv = 0, head_dim = 0;  // head_dim <= kMaxHeadDim
  bool rotate = false;
  const float* k = nullptr;  // [n_new, n_head_kv, head_dim] new tokens
  const float* v = nullptr;
  const uint16_t* k16_src = nullptr;  // [*, n_head_kv, head_dim] fp16 sources
  const uint16_t* v16_src = nullptr;
  uint16_t* k16_dst = nullptr;  // [*, n_head_kv, head_dim] fp16 destinations
  uint16_t* v16_dst = nullptr;
  AppendClass cls[2];
  const AppendJob* jobs = nullptr;  // device array [n_jobs]
  int n_jobs = 0;
};

// Launches the append on `stream` (asynchronous). Returns cudaErrorInvalidValue for arguments
// the kernel cannot serve (head_dim, groups), else the launch status.
cudaError_t kv_append(const AppendArgs& args, cudaStream_t stream);

}  // namespace akvq_cuda
