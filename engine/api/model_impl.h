// Model::Impl: what a loaded model owns (the mapped file, tokenizer, architecture). Internal to
// the engine; frontends see only akvq/engine.h.
#pragma once
#include <memory>

#include "akvq/engine.h"
#include "cuda/llama_gpu.h"
#include "gguf/gguf.h"
#include "models/llama.h"
#include "tokenizer/tokenizer.h"

namespace akvq {

struct Model::Impl {
  ModelInfo info;
  std::unique_ptr<gguf::File> file;  // must outlive llama (tensor views point into it)
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<models::Llama> llama;
  std::unique_ptr<cuda::LlamaGpu> gpu;  // the decoder on the GPU (ModelParams::device), else null

  // Llama::forward_batch on the model's device (the caches come from make_cache).
  void forward_batch(const models::LlamaSeq* seqs, int n_seqs, models::LlamaWorkspace& ws,
                     cpu::ThreadPool& pool) const {
    if (gpu) {
      gpu->forward_batch(seqs, n_seqs, pool);
    } else {
      llama->forward_batch(seqs, n_seqs, ws, pool);
    }
  }
  // A KV cache for this model's device.
  std::unique_ptr<kv::KvCache> make_cache(const kv::KvConfig& cfg) const {
    return gpu ? gpu->make_cache(cfg) : kv::KvCache::create(cfg);
  }
};

}  // namespace akvq
