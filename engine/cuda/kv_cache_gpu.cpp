// GpuKvCache (kv_cache_gpu.h).
#include "cuda/kv_cache_gpu.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>

#include "akvq/error.h"
#include "cuda/check.h"
#include "kv_attend.cuh"
#include "nn.cuh"

namespace akvq::cuda {

GpuKvCache::GpuKvCache(const kv::KvConfig& cfg) : KvCache(cfg) {
  cfg.validate();
  if (cfg.mode != "f16") {
    throw Unavailable("[cuda] kv mode '" + cfg.mode +
                      "' does not run on the GPU yet (the GPU cache is f16); use kv='f16' or device='cpu'");
  }
  if (cfg.head_dim > akvq_cuda::kMaxHeadDim) {
    throw InvalidArgument("[cuda] head_dim " + std::to_string(cfg.head_dim) + " exceeds the GPU kernels' " +
                          std::to_string(akvq_cuda::kMaxHeadDim));
  }
  row_ = int64_t{cfg.n_head_kv} * cfg.head_dim;
  n_.assign(cfg.n_layer, 0);
  const size_t bytes = static_cast<size_t>(cfg.n_ctx) * row_ * 2;
  for (int l = 0; l < cfg.n_layer; ++l) {
    k_.emplace_back(bytes);
    v_.emplace_back(bytes);
  }
}

void GpuKvCache::check(int layer, const char* what) const {
  if (layer < 0 || layer >= cfg_.n_layer) {
    throw InvalidArgument(std::string("[cuda] kv ") + what + ": layer " + std::to_string(layer) + " out of range [0, " +
                          std::to_string(cfg_.n_layer) + ")");
  }
}

int GpuKvCache::n_tokens(int layer) const {
  check(layer, "n_tokens");
  return n_[layer];
}

void GpuKvCache::clear() {
  n_.assign(cfg_.n_layer, 0);
}

void GpuKvCache::truncate(int n) {
  int most = 0;
  for (int c : n_) most = std::max(most, c);
  if (n < 0 || n > most) {
    throw InvalidArgument("[cuda] kv truncate(" + std::to_string(n) + "): the cache holds " + std::to_string(most) +
                          " tokens");
  }
  for (int& c : n_) c = std::min(c, n);
}

void GpuKvCache::append_device(int layer, const float* k, const float* v, int n_new) {
  check(layer, "append");
  if (n_new < 0) throw InvalidArgument("[cuda] kv append: negative token count");
  if (int64_t{n_[layer]} + n_new > cfg_.n_ctx) {
    throw InvalidArgument("[kv] context full: layer " + std::to_string(layer) + " holds " + std::to_string(n_[layer]) +
                          " tokens, appending " + std::to_string(n_new) +
                          " exceeds n_ctx = " + std::to_string(cfg_.n_ctx));
  }
  const int64_t off = int64_t{n_[layer]} * row_;
  AKVQ_CUDA_CHECK(akvq_cuda::f32_to_f16(k, k_[layer].as<uint16_t>() + off, n_new * row_, nullptr));
  AKVQ_CUDA_CHECK(akvq_cuda::f32_to_f16(v, v_[layer].as<uint16_t>() + off, n_new * row_, nullptr));
  n_[layer] += n_new;
}

void GpuKvCache::attend_device(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                               cpu::ThreadPool&) const {
  check(layer, "attend");
  const int nkv = cfg_.n_head_kv, hd = cfg_.head_dim;
  if (n_q < 1 || n_q > n_[layer]) {
    throw InvalidArgument("[cuda] kv attend: n_q = " + std::to_string(n_q) + " with " + std::to_string(n_[layer]) +
                          " tokens in layer " + std::to_string(layer));
  }
  if (n_head < nkv || n_head % nkv) {
    throw InvalidArgument("[cuda] kv attend: n_head = " + std::to_string(n_head) +
                          " is not a multiple of n_head_kv = " + std::to_string(nkv));
  }
  // Flash-decoding over the fp16 rows for decode and prefill alike: query i of a block takes the
  // splits and merges a decode at its position takes, so its output does not depend on n_q
  // (batch-invariant). Queries go in groups that keep the partials within ~64 MiB.
  akvq_cuda::AttendArgs a;
  a.n_head = n_head, a.n_head_kv = nkv, a.head_dim = hd, a.scale = scale;
  a.n_spans = 1;
  a.spans[0].packed = false;
  a.spans[0].k = k_[layer].as<uint8_t>(), a.spans[0].v = v_[layer].as<uint8_t>();
  const int64_t n_kv = n_[layer];
  const int64_t per_query = akvq_cuda::attend_max_splits(n_kv, n_q, 0) * n_head * (2 + int64_t{hd}) * 4;
  const int group = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_q, (int64_t{64} << 20) / per_query)));
  for (int i0 = 0; i0 < n_q; i0 += group) {
    const int nq = std::min(group, n_q - i0);
    a.n_q = nq;
    a.spans[0].n_rows = n_kv - n_q + i0 + nq;  // the group's last query sees every row up to its position
    a.q = q + static_cast<int64_t>(i0) * n_head * hd;
    a.out = out + static_cast<int64_t>(i0) * n_head * hd;
    const size_t need = static_cast<size_t>(akvq_cuda::attend_workspace_floats(a)) * 4;
    if (work_.bytes() < need) work_ = DeviceBuffer(need);
    a.partial = work_.as<float>();
    AKVQ_CUDA_CHECK(akvq_cuda::kv_attend_decode(a, nullptr));
  }
}

void GpuKvCache::append(int layer, const float* k, const float* v, int n_new) {
  check(layer, "append");
  if (n_new <= 0) {
    append_device(layer, nullptr, nullptr, n_new);
    return;
  }
  const size_t bytes = static_cast<size_t>(n_new) * row_ * 4;
  DeviceBuffer dk(bytes), dv(bytes);
  dk.upload(k, bytes), dv.upload(v, bytes);
  append_device(layer, dk.as<float>(), dv.as<float>(), n_new);
  AKVQ_CUDA_CHECK(cudaDeviceSynchronize());
}

void GpuKvCache::attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                        cpu::ThreadPool& pool) const {
  const size_t bytes = static_cast<size_t>(n_q > 0 ? n_q : 0) * n_head * cfg_.head_dim * 4;
  DeviceBuffer dq(bytes), dout(bytes);
  if (bytes) dq.upload(q, bytes);
  attend_device(layer, dq.as<float>(), n_q, n_head, scale, dout.as<float>(), pool);
  dout.download(out, bytes);
}

kv::KvStats GpuKvCache::stats() const {
  kv::KvStats s;
  s.n_tokens = n_.empty() ? 0 : n_[0];
  for (int c : n_) s.bytes += int64_t{c} * row_ * 2 * 2;
  s.bytes_reserved = int64_t{cfg_.n_layer} * cfg_.n_ctx * row_ * 2 * 2;
  s.bits_per_element = s.bytes ? 16.0 : 0.0;
  return s;
}

int64_t GpuKvCache::bytes_bound(int n_tokens) const {
  return int64_t{cfg_.n_layer} * n_tokens * row_ * 2 * 2;
}

}  // namespace akvq::cuda
