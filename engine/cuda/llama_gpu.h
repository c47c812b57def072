// The Llama decoder on the GPU (CUDA builds; the stub build throws Unavailable): the weights of a
// loaded models::Llama uploaded once in their stored types, and the same forward as
// Llama::forward_batch (engine/models/llama_forward.cpp) with the kernels of cuda/ and the caches
// from make_cache (GpuKvCache for f16, GpuQuantKvCache for the quantized modes). Inputs and logits
// stay host arrays: token ids and image embedding rows are uploaded, the requested logits
// downloaded. The debug hook of LlamaWorkspace is not called (Session::attention_profile refuses
// GPU models).
#pragma once
#include <cstdint>
#include <memory>

#include "kv/kv_cache.h"
#include "models/llama.h"

namespace akvq::cuda {

class LlamaGpu {
 public:
  // Uploads the weights of `cpu` (which must outlive this object for its hyperparameters).
  // Throws Unavailable without a usable GPU, OutOfMemory when the weights do not fit,
  // InvalidArgument for a head_dim or weight type the kernels do not serve.
  explicit LlamaGpu(const models::Llama& cpu);
  ~LlamaGpu();
  LlamaGpu(const LlamaGpu&) = delete;
  LlamaGpu& operator=(const LlamaGpu&) = delete;

  // A KV cache for this model on the GPU (kv::KvCache::create's contract): f16 in GPU memory,
  // the quantized modes as GpuQuantKvCache (kv_quant_cache_gpu.h).
  std::unique_ptr<kv::KvCache> make_cache(const kv::KvConfig& cfg) const;
  // Llama::forward_batch's contract; every sequence's cache must come from make_cache. pool: for
  // the work a cache does on the host.
  void forward_batch(const models::LlamaSeq* seqs, int n_seqs, cpu::ThreadPool& pool) const;
  int64_t weight_bytes() const;  // device bytes of the uploaded weights

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace akvq::cuda
