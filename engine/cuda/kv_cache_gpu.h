// The f16 KV cache in GPU memory (CUDA builds), behind the KvCache interface: per layer K and V
// [n_ctx, n_head_kv, head_dim] fp16, allocated at creation. The interface's host-pointer append /
// attend upload and download (tests, mixed use); the GPU model calls the *_device forms on device
// pointers. Decode and prefill attend with the same flash-decoding kernel, each query split and
// merged as a decode at its position would be: a query's output does not depend on the query
// count or the chunking (batch-invariant, as the CPU caches).
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/gpu_cache.h"
#include "kv/kv_cache.h"

namespace akvq::cuda {

class GpuKvCache final : public kv::KvCache, public GpuCacheOps {
 public:
  // cfg.mode must be "f16" (the quantized modes: GpuQuantKvCache; throws Unavailable otherwise,
  // InvalidArgument for bad sizes); throws OutOfMemory when the device cannot hold n_ctx tokens.
  explicit GpuKvCache(const kv::KvConfig& cfg);

  int n_tokens(int layer = 0) const override;
  void clear() override;
  void truncate(int n) override;
  void append(int layer, const float* k, const float* v, int n_new) override;
  void attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
              cpu::ThreadPool& pool) const override;
  kv::KvStats stats() const override;
  int64_t bytes_bound(int n_tokens) const override;

  // GpuCacheOps (device pointers; nothing to observe in f16).
  void observe_device(int, const float*, int, int) override {}
  void append_device(int layer, const float* k, const float* v, int n_new) override;
  void attend_device(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                     cpu::ThreadPool& pool) const override;

 private:
  void check(int layer, const char* what) const;
  int64_t row_;                      // n_head_kv * head_dim
  std::vector<int> n_;               // [n_layer] tokens stored
  std::vector<DeviceBuffer> k_, v_;  // [n_layer] fp16 [n_ctx, n_head_kv, head_dim]
  mutable DeviceBuffer work_;        // flash-decoding partials
};

}  // namespace akvq::cuda
