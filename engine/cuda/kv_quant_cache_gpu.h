// The quantized KV cache modes (q8 q4 q2 wht2 akvq2 akvq4 kivi2) for the GPU model (CUDA builds).
// The cache's state and policy stay those of the CPU cache (kv::QuantKvCache, one implementation
// of the window, pivots, precision classes and eviction times): each layer's new K/V rows and the
// per-token max|x| of the layer input come to the host, the CPU cache appends them (rotation and
// quantization), and the packed rows, pivots and window slots that changed are mirrored into GPU
// memory in the same layout. Decode (one query, every stored row visible) then runs flash-decoding
// on the GPU straight from the mirrored codes; longer query blocks (prefill, whose queries see
// tokens evicted within the chunk at fp16 until their eviction time) and kivi2 (K quantized per
// channel) attend on the host cache.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/gpu_cache.h"
#include "kv/kv_cache.h"
#include "kv/kv_quant_cache.h"

namespace akvq::cuda {

// The GPU memory GpuQuantKvCache reserves for a cache like `host` holding n_tokens tokens: every
// class a layer may use holds n_tokens packed rows per KV head, plus the fp16 window and pivot
// stores (kivi2, attended on the host: host.bytes_bound). What a KV budget prices a GPU slot at;
// needs no GPU.
int64_t mirror_bytes_bound(const kv::QuantKvCache& host, int n_tokens);

class GpuQuantKvCache final : public kv::KvCache, public GpuCacheOps {
 public:
  // cfg.mode: a quantized mode (kv::KvCache::create's validation and errors).
  explicit GpuQuantKvCache(const kv::KvConfig& cfg);

  int n_tokens(int layer = 0) const override { return host_->n_tokens(layer); }
  void clear() override;
  void truncate(int n) override;
  int restorable(int n) const override { return host_->restorable(n); }
  void checkpoint() override { host_->checkpoint(); }  // host memory; truncate re-mirrors
  void append(int layer, const float* k, const float* v, int n_new) override;
  void attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
              cpu::ThreadPool& pool) const override;
  // The host cache's figures, bytes_reserved the GPU mirror's (allocated whole at construction).
  kv::KvStats stats() const override;
  // The GPU mirror's layout for n_tokens (every class a layer may use holds n_tokens rows, plus the
  // fp16 window and pivots); kivi2 (no mirror): the host cache's bound.
  int64_t bytes_bound(int n_tokens) const override;
  KvSummary summary() const override { return host_->summary(); }
  void observe(int layer, const float* x, int n, int n_embd) override { host_->observe(layer, x, n, n_embd); }
  void observe_amax(int layer, const float* amax, int n) override { host_->observe_amax(layer, amax, n); }
  bool wants_observe() const override { return host_->wants_observe(); }
  void set_kinds(const TokenKind* kinds, int n) override { host_->set_kinds(kinds, n); }

  void observe_device(int layer, const float* x, int n, int n_embd) override;
  void append_device(int layer, const float* k, const float* v, int n_new) override;
  void attend_device(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                     cpu::ThreadPool& pool) const override;

  const kv::QuantKvCache& host() const { return *host_; }

 private:
  struct Mirror {                     // one layer's stores in GPU memory (the CPU cache's layout)
    DeviceBuffer seg_k[2], seg_v[2];  // class c: [n_head_kv][n_ctx × row bytes]
    int64_t rows[2] = {0, 0};         // rows of each class mirrored
    DeviceBuffer pk, pv;              // [pivots, n_head_kv, head_dim] fp16
    std::vector<int32_t> ppos;        // the pivot positions mirrored
    DeviceBuffer wk, wv;              // [window, n_head_kv, head_dim] fp16 ring
    bool dirty = true;                // everything re-mirrored at the next sync
  };
  void sync(int layer, int n_new);  // mirrors what the host append of n_new tokens changed

  std::unique_ptr<kv::QuantKvCache> host_;
  int64_t device_bytes_ = 0;  // the mirror's allocation
  bool mirrored_ = true;      // false for kivi2 (attends on the host)
  int64_t row_;               // n_head_kv * head_dim
  std::vector<Mirror> mir_;
  DeviceBuffer levels_;  // [2 classes][K, V][256] level tables
  mutable DeviceBuffer work_;
  mutable std::vector<float> hq_, hout_;  // host staging of queries / outputs / amax
  std::vector<float> hk_, hv_;            // host staging of new K / V rows
  DeviceBuffer amax_;                     // [rows] per-token max|x|
  std::vector<uint8_t> stage_;            // new packed rows of every head, gathered for one copy
};

}  // namespace akvq::cuda
