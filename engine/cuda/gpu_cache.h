// What the GPU model needs from a KV cache held for the GPU (both kinds: GpuKvCache, f16 in GPU
// memory; GpuQuantKvCache, the quantized modes). Device pointers, default stream.
#pragma once
#include "cpu/thread_pool.h"

namespace akvq::cuda {

class GpuCacheOps {
 public:
  virtual ~GpuCacheOps() = default;
  // The layer's input rows x [n, n_embd] before this layer's append (pivot detection).
  virtual void observe_device(int layer, const float* x, int n, int n_embd) = 0;
  // k, v [n_new, n_head_kv, head_dim] (K after RoPE).
  virtual void append_device(int layer, const float* k, const float* v, int n_new) = 0;
  // q / out [n_q, n_head, head_dim]: kv::KvCache::attend's contract. pool: for work the cache
  // does on the host.
  virtual void attend_device(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                             cpu::ThreadPool& pool) const = 0;
};

}  // namespace akvq::cuda
