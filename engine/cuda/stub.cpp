// CUDA backend stub used when the engine is built without CUDA (AKVQ_CUDA=OFF, or AUTO without
// nvcc): reports unavailability and throws a clear error when asked for.
#include "cuda/backend.h"
#include "cuda/llama_gpu.h"

#include <string>

#include <akvq/error.h>

namespace akvq::cuda {

bool is_available() {
  return false;
}

int device_count() {
  return 0;
}

std::string status() {
  return "this build of pyakvq has no CUDA backend (built with AKVQ_CUDA=OFF or without nvcc)";
}

void require() {
  throw Unavailable("[cuda] " + status());
}

struct LlamaGpu::Impl {};

LlamaGpu::LlamaGpu(const models::Llama&) {
  require();
}
LlamaGpu::~LlamaGpu() = default;
std::unique_ptr<kv::KvCache> LlamaGpu::make_cache(const kv::KvConfig&) const {
  require();
  return nullptr;
}
void LlamaGpu::forward_batch(const models::LlamaSeq*, int, cpu::ThreadPool&) const {
  require();
}
int64_t LlamaGpu::weight_bytes() const {
  return 0;
}

}  // namespace akvq::cuda
