// LlamaGpu (llama_gpu.h): the forward of llama_forward.cpp, step for step, on device buffers.
#include "cuda/llama_gpu.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "cuda/backend.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "cuda/kv_cache_gpu.h"
#include "cuda/kv_quant_cache_gpu.h"
#include "matmul.cuh"
#include "nn.cuh"

namespace akvq::cuda {

namespace {

struct GpuWeight {  // a weight in its stored type
  akvq_cuda::WType type = akvq_cuda::WType::F32;
  int64_t n_in = 0, n_out = 0;
  DeviceBuffer data;
};

GpuWeight upload_weight(const TensorView& t) {
  GpuWeight w;
  if (!akvq_cuda::wtype_known(static_cast<int>(t.type))) {
    throw InvalidArgument("[cuda] tensor '" + t.name + "': type " + std::to_string(static_cast<int>(t.type)) +
                          " has no GPU kernel");
  }
  w.type = static_cast<akvq_cuda::WType>(static_cast<int>(t.type));
  w.n_in = t.ne[0];
  w.n_out = t.n_dims > 1 ? t.ne[1] : 1;
  if (w.n_in % 32 != 0) {
    throw InvalidArgument("[cuda] tensor '" + t.name + "': rows of " + std::to_string(w.n_in) +
                          " values (the GPU kernels need a multiple of 32)");
  }
  w.data = DeviceBuffer(t.nbytes);
  w.data.upload(t.data, t.nbytes);
  return w;
}

DeviceBuffer upload_f32(const TensorView& t) {  // norms and biases (F32 in every supported file)
  if (!t.data) return DeviceBuffer();
  if (t.type != DType::F32) throw InvalidArgument("[cuda] tensor '" + t.name + "': expected F32");
  DeviceBuffer b(t.nbytes);
  b.upload(t.data, t.nbytes);
  return b;
}

struct GpuLayer {
  DeviceBuffer attn_norm, ffn_norm, bq, bk, bv, bo, b_gate, b_up, b_down;  // biases: null when absent
  GpuWeight wq, wk, wv, wo, w_gate, w_up, w_down;
};

template <class T>
T* grow(DeviceBuffer& b, int64_t count) {
  const size_t bytes = static_cast<size_t>(count) * sizeof(T);
  if (b.bytes() < bytes) b = DeviceBuffer(bytes);
  return b.as<T>();
}

// x[n, cols] += b[cols] for every row; nothing when the file has no such bias.
void bias(float* x, const DeviceBuffer& b, int64_t n, int64_t cols) {
  if (b.ptr()) AKVQ_CUDA_CHECK(akvq_cuda::add_bias(x, b.as<float>(), n, cols, nullptr));
}

void mm(const GpuWeight& w, const float* x, int64_t n, float* y) {
  akvq_cuda::MatmulArgs a;
  a.type = w.type, a.w = w.data.as<uint8_t>(), a.n_in = w.n_in, a.n_out = w.n_out, a.x = x, a.n_tok = n, a.y = y;
  AKVQ_CUDA_CHECK(akvq_cuda::matmul(a, nullptr));
}

}  // namespace

struct LlamaGpu::Impl {
  const models::Llama* cpu = nullptr;
  GpuWeight tok_embd, output_own;
  const GpuWeight* output = nullptr;  // &output_own, or &tok_embd when the file ties them
  DeviceBuffer out_norm, rope_freqs;
  std::vector<GpuLayer> layers;
  int64_t bytes = 0;
  // workspace (grown on demand), shared by every caller: forward_batch holds `mu` throughout
  // (sessions of one model take turns on the GPU)
  mutable std::mutex mu;
  mutable DeviceBuffer x, xn, q, k, v, attn, gate, up, xo, logits, ids, pos;
};

LlamaGpu::LlamaGpu(const models::Llama& cpu) : impl_(std::make_unique<Impl>()) {
  require();
  const models::LlamaHparams& hp = cpu.hparams();
  if (hp.head_dim > 256) throw InvalidArgument("[cuda] head_dim " + std::to_string(hp.head_dim) + " exceeds 256");
  Impl& m = *impl_;
  m.cpu = &cpu;
  m.tok_embd = upload_weight(cpu.tok_embd());
  if (cpu.output().data == cpu.tok_embd().data) {  // tied: one copy on the device
    m.output = &m.tok_embd;
  } else {
    m.output_own = upload_weight(cpu.output());
    m.output = &m.output_own;
  }
  m.out_norm = upload_f32(cpu.out_norm());
  m.rope_freqs = upload_f32(cpu.rope_freqs());  // none: a null buffer, as() == nullptr
  m.bytes = static_cast<int64_t>(m.tok_embd.data.bytes() + m.output_own.data.bytes() + m.out_norm.bytes());
  for (const models::LlamaLayer& L : cpu.layers()) {
    GpuLayer g;
    g.attn_norm = upload_f32(L.attn_norm), g.ffn_norm = upload_f32(L.ffn_norm);
    g.bq = upload_f32(L.bq), g.bk = upload_f32(L.bk), g.bv = upload_f32(L.bv), g.bo = upload_f32(L.bo);
    g.b_gate = upload_f32(L.b_gate), g.b_up = upload_f32(L.b_up), g.b_down = upload_f32(L.b_down);
    g.wq = upload_weight(L.wq), g.wk = upload_weight(L.wk), g.wv = upload_weight(L.wv), g.wo = upload_weight(L.wo);
    g.w_gate = upload_weight(L.w_gate), g.w_up = upload_weight(L.w_up), g.w_down = upload_weight(L.w_down);
    for (const GpuWeight* w : {&g.wq, &g.wk, &g.wv, &g.wo, &g.w_gate, &g.w_up, &g.w_down}) m.bytes += w->data.bytes();
    for (const DeviceBuffer* b : {&g.attn_norm, &g.ffn_norm, &g.bq, &g.bk, &g.bv, &g.bo, &g.b_gate, &g.b_up, &g.b_down}) {
      m.bytes += b->bytes();
    }
    m.layers.push_back(std::move(g));
  }
}

LlamaGpu::~LlamaGpu() = default;

int64_t LlamaGpu::weight_bytes() const {
  return impl_->bytes;
}

std::unique_ptr<kv::KvCache> LlamaGpu::make_cache(const kv::KvConfig& cfg) const {
  cfg.validate();
  if (cfg.mode == "f16") return std::make_unique<GpuKvCache>(cfg);
  return std::make_unique<GpuQuantKvCache>(cfg);
}

void LlamaGpu::forward_batch(const models::LlamaSeq* seqs, int n_seqs, cpu::ThreadPool& pool) const {
  const Impl& m = *impl_;
  const std::lock_guard<std::mutex> lock(m.mu);
  const models::LlamaHparams& hp = m.cpu->hparams();
  if (n_seqs < 1) throw InvalidArgument("[llama] forward: no sequences");
  std::vector<GpuCacheOps*> caches(n_seqs);
  int64_t n64 = 0;
  for (int s = 0; s < n_seqs; ++s) {
    const models::LlamaSeq& sq = seqs[s];
    caches[s] = dynamic_cast<GpuCacheOps*>(sq.cache);
    if (!caches[s]) throw InvalidArgument("[cuda] forward: a sequence's KV cache is not in GPU memory");
    if (sq.n < 1) throw InvalidArgument("[llama] forward: no tokens");
    const int n_past = sq.cache->n_tokens();
    if (int64_t{n_past} + sq.n > sq.cache->config().n_ctx) {
      throw InvalidArgument("[llama] forward: " + std::to_string(n_past) + " cached + " + std::to_string(sq.n) +
                            " new tokens exceed n_ctx = " + std::to_string(sq.cache->config().n_ctx));
    }
    n64 += sq.n;
  }
  if (n64 > (int64_t{1} << 30)) throw InvalidArgument("[llama] forward: too many rows in one call");
  const int64_t n = n64;
  const int64_t E = hp.n_embd, Q = int64_t{hp.n_head} * hp.head_dim, KV = int64_t{hp.n_head_kv} * hp.head_dim,
                F = hp.n_ff;
  float* x = grow<float>(m.x, n * E);        // [n, n_embd]
  float* xn = grow<float>(m.xn, n * E);      // [n, n_embd]
  float* q = grow<float>(m.q, n * Q);        // [n, n_head, head_dim]
  float* k = grow<float>(m.k, n * KV);       // [n, n_head_kv, head_dim]
  float* v = grow<float>(m.v, n * KV);       // [n, n_head_kv, head_dim]
  float* attn = grow<float>(m.attn, n * Q);  // [n, n_head, head_dim]
  float* gate = grow<float>(m.gate, n * F);  // [n, n_ff]
  float* up = grow<float>(m.up, n * F);      // [n, n_ff]
  int32_t* ids = grow<int32_t>(m.ids, n);    // [n]
  int32_t* pos = grow<int32_t>(m.pos, n);    // [n]

  // inputs: ids (embedding rows take id 0 and are overwritten), positions
  std::vector<int32_t> h_ids(n), h_pos(n);
  for (int s = 0, r = 0; s < n_seqs; ++s) {
    const models::LlamaInput& in = seqs[s].in;
    const int n_past = seqs[s].cache->n_tokens();
    for (int i = 0; i < seqs[s].n; ++i, ++r) {
      const bool embd = in.embd_index && in.embd_index[i] >= 0;
      const int32_t id = embd ? 0 : in.ids[i];
      if (id < 0 || id >= hp.n_vocab) {
        throw InvalidArgument("[llama] token id " + std::to_string(id) + " out of range [0, " +
                              std::to_string(hp.n_vocab) + ")");
      }
      h_ids[r] = id;
      h_pos[r] = n_past + i;
    }
  }
  AKVQ_CUDA_CHECK(cudaMemcpy(ids, h_ids.data(), n * 4, cudaMemcpyHostToDevice));
  AKVQ_CUDA_CHECK(cudaMemcpy(pos, h_pos.data(), n * 4, cudaMemcpyHostToDevice));
  AKVQ_CUDA_CHECK(
      akvq_cuda::get_rows(m.tok_embd.type, m.tok_embd.data.as<uint8_t>(), E, hp.n_vocab, ids, n, x, nullptr));
  for (int s = 0, r0 = 0; s < n_seqs; r0 += seqs[s].n, ++s) {
    const models::LlamaInput& in = seqs[s].in;
    if (!in.embd_index) continue;
    for (int i = 0; i < seqs[s].n;) {  // runs of consecutive embedding rows in one copy each
      if (in.embd_index[i] < 0) {
        ++i;
        continue;
      }
      int j = i + 1;
      while (j < seqs[s].n && in.embd_index[j] == in.embd_index[j - 1] + 1) ++j;
      AKVQ_CUDA_CHECK(cudaMemcpy(x + (r0 + i) * E, in.embd + int64_t{in.embd_index[i]} * E, (j - i) * E * 4,
                                 cudaMemcpyHostToDevice));
      i = j;
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
  const bool half_split = hp.rope_mode == ops::RopeMode::HalfSplit;
  for (int il = 0; il < hp.n_layer; ++il) {
    const GpuLayer& L = m.layers[il];
    // attention block
    for (int s = 0, r0 = 0; s < n_seqs; r0 += seqs[s].n, ++s) {  // layer input, before attn_norm (pivots)
      caches[s]->observe_device(il, x + r0 * E, seqs[s].n, static_cast<int>(E));
    }
    AKVQ_CUDA_CHECK(akvq_cuda::rms_norm(x, L.attn_norm.as<float>(), n, E, hp.rms_eps, xn, nullptr));
    mm(L.wq, xn, n, q), mm(L.wk, xn, n, k), mm(L.wv, xn, n, v);
    bias(q, L.bq, n, Q), bias(k, L.bk, n, KV), bias(v, L.bv, n, KV);
    AKVQ_CUDA_CHECK(akvq_cuda::rope(q, n, hp.n_head, hp.head_dim, hp.n_rot, pos, hp.rope_theta, hp.rope_freq_scale,
                                    m.rope_freqs.as<float>(), half_split, nullptr));
    AKVQ_CUDA_CHECK(akvq_cuda::rope(k, n, hp.n_head_kv, hp.head_dim, hp.n_rot, pos, hp.rope_theta,
                                    hp.rope_freq_scale, m.rope_freqs.as<float>(), half_split, nullptr));
    for (int s = 0, r0 = 0; s < n_seqs; r0 += seqs[s].n, ++s) {  // each sequence over its own cache
      caches[s]->append_device(il, k + r0 * KV, v + r0 * KV, seqs[s].n);
      caches[s]->attend_device(il, q + r0 * Q, seqs[s].n, hp.n_head, scale, attn + r0 * Q, pool);
    }
    mm(L.wo, attn, n, xn);
    bias(xn, L.bo, n, E);
    AKVQ_CUDA_CHECK(akvq_cuda::add(x, xn, n * E, nullptr));
    // MLP block
    AKVQ_CUDA_CHECK(akvq_cuda::rms_norm(x, L.ffn_norm.as<float>(), n, E, hp.rms_eps, xn, nullptr));
    mm(L.w_gate, xn, n, gate), mm(L.w_up, xn, n, up);
    bias(gate, L.b_gate, n, F), bias(up, L.b_up, n, F);
    AKVQ_CUDA_CHECK(akvq_cuda::swiglu(gate, up, gate, n * F, nullptr));
    mm(L.w_down, gate, n, xn);
    bias(xn, L.b_down, n, E);
    AKVQ_CUDA_CHECK(akvq_cuda::add(x, xn, n * E, nullptr));
  }

  // output: the requested rows gathered, normed, projected, downloaded
  int64_t n_out = 0;
  for (int s = 0; s < n_seqs; ++s) {
    if (seqs[s].logits) n_out += seqs[s].all_logits ? seqs[s].n : 1;
  }
  if (n_out == 0) {
    AKVQ_CUDA_CHECK(cudaDeviceSynchronize());
    return;
  }
  const int64_t nv = hp.n_vocab;
  float* xo = grow<float>(m.xo, n_out * E);
  for (int s = 0, r0 = 0, o = 0; s < n_seqs; r0 += seqs[s].n, ++s) {
    if (!seqs[s].logits) continue;
    const int rows = seqs[s].all_logits ? seqs[s].n : 1;
    AKVQ_CUDA_CHECK(cudaMemcpy(xo + int64_t{o} * E, x + (int64_t{r0} + seqs[s].n - rows) * E, rows * E * 4,
                               cudaMemcpyDeviceToDevice));
    o += rows;
  }
  AKVQ_CUDA_CHECK(akvq_cuda::rms_norm(xo, m.out_norm.as<float>(), n_out, E, hp.rms_eps, xn, nullptr));
  float* lo = grow<float>(m.logits, n_out * nv);
  mm(*m.output, xn, n_out, lo);
  for (int s = 0, o = 0; s < n_seqs; ++s) {
    if (!seqs[s].logits) continue;
    const int rows = seqs[s].all_logits ? seqs[s].n : 1;
    AKVQ_CUDA_CHECK(cudaMemcpy(seqs[s].logits, lo + int64_t{o} * nv, rows * nv * 4, cudaMemcpyDeviceToHost));
    o += rows;
  }
}

}  // namespace akvq::cuda
