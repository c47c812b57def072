// f16 KV cache storage (append / truncate / stats). Attention lives in kv_f16_attend.cpp.
#include "kv/kv_f16.h"

#include <algorithm>
#include <string>

#include "akvq/error.h"
#include "ops/ops.h"

namespace akvq::kv {

namespace {
constexpr int kMinAlloc = 256;  // tokens allocated at the first append of a layer
}

F16KvCache::F16KvCache(const KvConfig& cfg)
    : KvCache(cfg),
      row_(static_cast<int64_t>(cfg.n_head_kv) * cfg.head_dim),
      n_(cfg.n_layer, 0),
      cap_(cfg.n_layer, 0),
      k_(cfg.n_layer),
      v_(cfg.n_layer) {}

void F16KvCache::check_layer(int layer, const char* what) const {
  if (layer < 0 || layer >= cfg_.n_layer) {
    throw InvalidArgument(std::string("[kv] ") + what + ": layer " + std::to_string(layer) +
                          " out of range [0, " + std::to_string(cfg_.n_layer) + ")");
  }
}

int F16KvCache::n_tokens(int layer) const {
  check_layer(layer, "n_tokens");
  return n_[layer];
}

void F16KvCache::clear() { std::fill(n_.begin(), n_.end(), 0); }

void F16KvCache::truncate(int n) {
  const int most = *std::max_element(n_.begin(), n_.end());
  if (n < 0 || n > most) {
    throw InvalidArgument("[kv] truncate(" + std::to_string(n) + "): the cache holds " +
                          std::to_string(most) + " tokens");
  }
  for (int& t : n_) t = std::min(t, n);
}

void F16KvCache::reserve(int layer, int n_tokens) {
  if (n_tokens <= cap_[layer]) return;
  int cap = std::max({n_tokens, 2 * cap_[layer], kMinAlloc});
  cap = std::min(cap, cfg_.n_ctx);
  k_[layer].resize(static_cast<size_t>(cap) * row_);
  v_[layer].resize(static_cast<size_t>(cap) * row_);
  cap_[layer] = cap;
}

void F16KvCache::append(int layer, const float* k, const float* v, int n_new) {
  check_layer(layer, "append");
  if (n_new < 0) throw InvalidArgument("[kv] append: negative token count");
  if (static_cast<int64_t>(n_[layer]) + n_new > cfg_.n_ctx) {
    throw InvalidArgument("[kv] context full: layer " + std::to_string(layer) + " holds " +
                          std::to_string(n_[layer]) + " tokens, appending " + std::to_string(n_new) +
                          " exceeds n_ctx = " + std::to_string(cfg_.n_ctx));
  }
  if (n_new == 0) return;
  reserve(layer, n_[layer] + n_new);
  const size_t off = static_cast<size_t>(n_[layer]) * row_;
  const int64_t n = static_cast<int64_t>(n_new) * row_;
  ops::f32_to_f16_row(k, k_[layer].data() + off, n);
  ops::f32_to_f16_row(v, v_[layer].data() + off, n);
  n_[layer] += n_new;
}

KvStats F16KvCache::stats() const {
  KvStats s;
  s.n_tokens = n_[0];
  for (int l = 0; l < cfg_.n_layer; ++l) {
    s.bytes += static_cast<int64_t>(n_[l]) * row_ * 2 * sizeof(uint16_t);
    s.bytes_reserved += static_cast<int64_t>(cap_[l]) * row_ * 2 * sizeof(uint16_t);
  }
  s.bits_per_element = 16.0;
  return s;
}

int64_t F16KvCache::bytes_bound(int n_tokens) const {
  return int64_t{n_tokens} * row_ * 2 * sizeof(uint16_t) * cfg_.n_layer;
}

}  // namespace akvq::kv
