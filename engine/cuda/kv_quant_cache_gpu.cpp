// GpuQuantKvCache (kv_quant_cache_gpu.h).
#include "cuda/kv_quant_cache_gpu.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "akvq/error.h"
#include "cuda/check.h"
#include "cuda/kv_spans.h"
#include "kv_attend.cuh"
#include "nn.cuh"

namespace akvq::cuda {

namespace {
constexpr int kLevelSlots = 256;  // floats per level table in levels_

void to_host(std::vector<float>& h, const float* d, int64_t n) {
  h.resize(static_cast<size_t>(n));
  if (n > 0) AKVQ_CUDA_CHECK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
}

void to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) AKVQ_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
}  // namespace

GpuQuantKvCache::GpuQuantKvCache(const kv::KvConfig& cfg) : KvCache(cfg) {
  std::unique_ptr<kv::KvCache> c = kv::KvCache::create(cfg);
  host_.reset(dynamic_cast<kv::QuantKvCache*>(c.get()));
  if (!host_) throw InvalidArgument("[cuda] kv mode '" + cfg.mode + "' is not a quantized mode");
  c.release();
  mirrored_ = !host_->options().kivi;
  row_ = int64_t{cfg.n_head_kv} * cfg.head_dim;
  mir_.resize(cfg.n_layer);
  std::vector<float> lv(2 * 2 * kLevelSlots, 0.0f);
  for (int c2 = 0; c2 < 2; ++c2) {
    for (int kv_i = 0; kv_i < 2; ++kv_i) {
      const kv::RowCodec& rc = kv_i == 0 ? host_->codec_k(c2) : host_->codec_v(c2);
      std::copy(rc.levels(), rc.levels() + (1 << rc.spec().bits), lv.begin() + (c2 * 2 + kv_i) * kLevelSlots);
    }
  }
  levels_ = DeviceBuffer::from(lv);
  if (!mirrored_) return;
  // every mirror buffer at its full size now: a cache that does not fit fails here, when a slot or
  // session is made, not in the middle of a step
  const int nkv = cfg.n_head_kv;
  const size_t frow = static_cast<size_t>(row_) * 2;  // fp16 token row
  for (int l = 0; l < cfg.n_layer; ++l) {
    Mirror& m = mir_[l];
    for (int c = 0; c < (host_->is_tsa(l) ? 2 : 1); ++c) {
      m.seg_k[c] = DeviceBuffer(static_cast<size_t>(nkv) * cfg.n_ctx * host_->codec_k(c).row_bytes());
      m.seg_v[c] = DeviceBuffer(static_cast<size_t>(nkv) * cfg.n_ctx * host_->codec_v(c).row_bytes());
    }
    if (host_->options().pivots > 0) {
      m.pk = DeviceBuffer(host_->options().pivots * frow);
      m.pv = DeviceBuffer(host_->options().pivots * frow);
    }
    if (host_->window_cap() > 0) {
      m.wk = DeviceBuffer(host_->window_cap() * frow);
      m.wv = DeviceBuffer(host_->window_cap() * frow);
    }
  }
  device_bytes_ = bytes_bound(cfg.n_ctx);
}

int64_t mirror_bytes_bound(const kv::QuantKvCache& host, int n_tokens) {
  const kv::KvConfig& cfg = host.config();
  if (host.options().kivi) return host.bytes_bound(n_tokens);  // no mirror: the host cache
  const int64_t row = int64_t{cfg.n_head_kv} * cfg.head_dim;
  int64_t b = 0;  // n_tokens packed rows per head for each class a layer uses, plus the fp16 stores
  for (int l = 0; l < cfg.n_layer; ++l) {
    for (int c = 0; c < (host.is_tsa(l) ? 2 : 1); ++c) {
      b += int64_t{cfg.n_head_kv} * n_tokens *
           static_cast<int64_t>(host.codec_k(c).row_bytes() + host.codec_v(c).row_bytes());
    }
    b += int64_t{host.options().pivots + host.window_cap()} * row * 2 * 2;
  }
  return b;
}

int64_t GpuQuantKvCache::bytes_bound(int n_tokens) const {
  return mirror_bytes_bound(*host_, n_tokens);
}

kv::KvStats GpuQuantKvCache::stats() const {
  kv::KvStats s = host_->stats();
  if (mirrored_) s.bytes_reserved = device_bytes_;
  return s;
}

void GpuQuantKvCache::clear() {
  host_->clear();
  for (Mirror& m : mir_) m.dirty = true;
}

void GpuQuantKvCache::truncate(int n) {
  host_->truncate(n);
  for (Mirror& m : mir_) m.dirty = true;
}

void GpuQuantKvCache::sync(int layer, int n_new) {
  if (!mirrored_) return;
  Mirror& m = mir_[layer];
  const kv::QuantKvCache::Layer& S = host_->layer_state(layer);
  const int nkv = cfg_.n_head_kv;
  const bool full = m.dirty;
  m.dirty = true;  // until this sync completes (a failed copy leaves the layer to be re-mirrored)
  for (int c = 0; c < 2; ++c) {
    const kv::QuantKvCache::Segment& g = S.seg[c];
    const size_t kb = host_->codec_k(c).row_bytes(), vb = host_->codec_v(c).row_bytes();
    const int64_t n = g.n();
    if (n == 0) {
      m.rows[c] = 0;
      continue;
    }
    if (!m.seg_k[c].ptr())
      throw Error("[cuda] kv: layer " + std::to_string(layer) + " has no mirror of class " +
                  std::to_string(c));                              // the constructor sizes every class a layer uses
    const int64_t from = (full || n < m.rows[c]) ? 0 : m.rows[c];  // rows compacted: all again
    // the new rows of every head gathered on the host, then one 2-D copy per K and V (a head's
    // rows are n_ctx rows apart on the device)
    for (int kv_i = 0; kv_i < 2; ++kv_i) {
      const size_t rb = kv_i == 0 ? kb : vb;
      const size_t w = static_cast<size_t>(n - from) * rb;
      if (w == 0) continue;
      stage_.resize(w * nkv);
      for (int h = 0; h < nkv; ++h) {
        const std::vector<uint8_t>& src = kv_i == 0 ? g.k[h] : g.v[h];
        std::memcpy(stage_.data() + h * w, src.data() + from * rb, w);
      }
      uint8_t* dst = (kv_i == 0 ? m.seg_k[c] : m.seg_v[c]).as<uint8_t>() + from * rb;
      AKVQ_CUDA_CHECK(
          cudaMemcpy2D(dst, static_cast<size_t>(cfg_.n_ctx) * rb, stage_.data(), w, w, nkv, cudaMemcpyHostToDevice));
    }
    m.rows[c] = n;
  }
  const size_t rb = static_cast<size_t>(row_) * 2;  // fp16 token row
  const size_t n_piv = S.ppos.size();
  const bool piv_changed = full || S.ppos != m.ppos;
  if (n_piv > 0 && piv_changed) {  // at most `pivots` rows: re-mirrored whole when they change
    to_device(m.pk.ptr(), S.pk.data(), n_piv * rb);
    to_device(m.pv.ptr(), S.pv.data(), n_piv * rb);
  }
  m.ppos = S.ppos;
  const int cap = host_->window_cap();
  if (cap > 0 && S.w_count > 0) {  // the newest slots: at most two runs of the ring
    const int changed = full ? S.w_count : std::min(n_new, S.w_count);
    const int s0 = (S.w_head + S.w_count - changed) % cap;
    const int len1 = std::min(changed, cap - s0);
    for (const auto& [first, len] : {std::pair<int, int>{s0, len1}, std::pair<int, int>{0, changed - len1}}) {
      if (len == 0) continue;
      to_device(m.wk.as<uint8_t>() + first * rb, S.wk.data() + first * row_, len * rb);
      to_device(m.wv.as<uint8_t>() + first * rb, S.wv.data() + first * row_, len * rb);
    }
  }
  m.dirty = false;
}

void GpuQuantKvCache::append(int layer, const float* k, const float* v, int n_new) {
  host_->append(layer, k, v, n_new);
  sync(layer, n_new);
}

void GpuQuantKvCache::attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                             cpu::ThreadPool& pool) const {
  host_->attend(layer, q, n_q, n_head, scale, out, pool);
}

void GpuQuantKvCache::observe_device(int layer, const float* x, int n, int n_embd) {
  if (!host_->wants_observe() || n <= 0) return;
  if (amax_.bytes() < static_cast<size_t>(n) * 4) amax_ = DeviceBuffer(static_cast<size_t>(n) * 4);
  AKVQ_CUDA_CHECK(akvq_cuda::row_absmax(x, n, n_embd, amax_.as<float>(), nullptr));
  to_host(hq_, amax_.as<float>(), n);
  host_->observe_amax(layer, hq_.data(), n);
}

void GpuQuantKvCache::append_device(int layer, const float* k, const float* v, int n_new) {
  if (n_new < 0) throw InvalidArgument("[cuda] kv append: negative token count");
  to_host(hk_, k, n_new * row_);
  to_host(hv_, v, n_new * row_);
  append(layer, hk_.data(), hv_.data(), n_new);
}

void GpuQuantKvCache::attend_device(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                                    cpu::ThreadPool& pool) const {
  const kv::QuantKvCache::Layer& S = host_->layer_state(layer);
  const int hd = cfg_.head_dim, nkv = cfg_.n_head_kv;
  const bool decode = n_q == 1 && mirrored_ && S.xpos.empty() && S.n_stage >= 1 && !mir_[layer].dirty;
  if (!decode) {  // on the host cache
    const int64_t n = int64_t{n_q} * n_head * hd;
    to_host(hq_, q, n);
    hout_.resize(static_cast<size_t>(n));
    host_->attend(layer, hq_.data(), n_q, n_head, scale, hout_.data(), pool);
    to_device(out, hout_.data(), n * 4);
    return;
  }
  if (n_head < nkv || n_head % nkv) {
    throw InvalidArgument("[cuda] kv attend: n_head = " + std::to_string(n_head) +
                          " is not a multiple of n_head_kv = " + std::to_string(nkv));
  }
  const Mirror& m = mir_[layer];
  akvq_cuda::AttendArgs a;
  a.n_head = n_head, a.n_head_kv = nkv, a.head_dim = hd, a.scale = scale, a.rotate = host_->options().rotate;
  a.q = q, a.out = out;
  const float* lv = levels_.as<float>();
  for (int c = 0; c < 2; ++c) {
    if (m.rows[c] == 0) continue;
    akvq_cuda::AttendSpan& sp = a.spans[a.n_spans++];
    sp.packed = true;
    sp.ks = row_spec(host_->codec_k(c));
    sp.vs = row_spec(host_->codec_v(c));
    sp.k = m.seg_k[c].as<uint8_t>(), sp.v = m.seg_v[c].as<uint8_t>();
    sp.head_stride_k = int64_t{cfg_.n_ctx} * sp.ks.row_bytes();
    sp.head_stride_v = int64_t{cfg_.n_ctx} * sp.vs.row_bytes();
    sp.n_rows = m.rows[c];
    sp.k_levels = lv + (c * 2) * kLevelSlots, sp.v_levels = lv + (c * 2 + 1) * kLevelSlots;
  }
  const int64_t rb = row_ * 2;
  auto f16_span = [&](const DeviceBuffer& k, const DeviceBuffer& v, int64_t first, int64_t n) {
    if (n <= 0) return;
    akvq_cuda::AttendSpan& sp = a.spans[a.n_spans++];
    sp.packed = false;
    sp.k = k.as<uint8_t>() + first * rb, sp.v = v.as<uint8_t>() + first * rb;
    sp.n_rows = n;
  };
  f16_span(m.pk, m.pv, 0, static_cast<int64_t>(S.ppos.size()));
  const int cap = host_->window_cap();
  if (S.w_count > 0) {  // the ring's valid slots: [w_head, w_head + w_count) modulo cap
    const int first = std::min(S.w_count, cap - S.w_head);
    f16_span(m.wk, m.wv, S.w_head, first);
    f16_span(m.wk, m.wv, 0, S.w_count - first);
  }
  const size_t need = static_cast<size_t>(akvq_cuda::attend_workspace_floats(a)) * 4;
  if (work_.bytes() < need) work_ = DeviceBuffer(need);
  a.partial = work_.as<float>();
  AKVQ_CUDA_CHECK(akvq_cuda::kv_attend_decode(a, nullptr));
}

}  // namespace akvq::cuda
