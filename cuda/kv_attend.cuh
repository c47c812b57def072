// Flash-decoding over the packed AKVQ cache: attention of one or more causal queries per head
// over spans of cached tokens, read straight from their 2/3/4/8-bit codes (uniform or Gaussian
// levels) or fp16.
//
// The query is scaled and rotated once per block (q̃ = H·q·scale, H the WHT of kv_codec.cuh) when
// `rotate`, so scores are q̃·x̂ in the rotated basis and values accumulate there; the output is
// rotated back once (H is its own inverse). Tokens form one flat index space, the spans in order;
// each query's rows are cut into splits (grid.y; its own split size, as a decode over those rows
// would use), each run by one block of 4 warps over tiles of 32 rows: a lane scores one row for
// every query head of the GQA group (one read of the codes per KV head), then the lanes spread
// over the dimensions to accumulate the values. Each split writes its online-softmax partial
// (m, l, acc[n]); a second kernel merges a query's splits in order and un-rotates. Decode (one
// query) reads every cached byte once per step; n_q queries (prefill) read their rows each.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kv_attend_args.cuh"

namespace akvq_cuda {

// Launches the two kernels on `stream` (asynchronous). cudaErrorInvalidValue for arguments the
// kernels cannot serve; no tokens at all gives zeros.
cudaError_t kv_attend_decode(const AttendArgs& args, cudaStream_t stream);

}  // namespace akvq_cuda
