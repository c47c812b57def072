// KvConfig validation and the factory that picks a storage mode.
#include "kv/kv_cache.h"

#include <string>

#include "akvq/error.h"
#include "kv/kv_f16.h"
#include "kv/kv_options.h"
#include "kv/kv_quant_cache.h"

namespace akvq::kv {

namespace {
constexpr int kMaxCtx = 1 << 20;      // tokens
constexpr int kMaxHeadDim = 1 << 12;  // values per head
constexpr int kMaxHeadsKv = 1 << 12;
constexpr int kMaxLayers = 1 << 12;

void check_range(const char* field, int v, int lo, int hi) {
  if (v < lo || v > hi) {
    throw InvalidArgument(std::string("[kv] ") + field + " = " + std::to_string(v) +
                          " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
}
}  // namespace

void KvConfig::validate() const {
  check_range("n_layer", n_layer, 1, kMaxLayers);
  check_range("n_head_kv", n_head_kv, 1, kMaxHeadsKv);
  check_range("head_dim", head_dim, 1, kMaxHeadDim);
  check_range("n_ctx", n_ctx, 1, kMaxCtx);
  // mode and options (throws naming the mode or the option)
  resolve_kv_options(mode, options, n_layer, head_dim, has_file_tsa ? &file_tsa_layers : nullptr);
}

std::unique_ptr<KvCache> KvCache::create(const KvConfig& cfg) {
  check_range("n_layer", cfg.n_layer, 1, kMaxLayers);
  check_range("n_head_kv", cfg.n_head_kv, 1, kMaxHeadsKv);
  check_range("head_dim", cfg.head_dim, 1, kMaxHeadDim);
  check_range("n_ctx", cfg.n_ctx, 1, kMaxCtx);
  KvOptions opt = resolve_kv_options(cfg.mode, cfg.options, cfg.n_layer, cfg.head_dim,
                                     cfg.has_file_tsa ? &cfg.file_tsa_layers : nullptr);
  if (!opt.quantized) return std::make_unique<F16KvCache>(cfg);
  return std::make_unique<QuantKvCache>(cfg, std::move(opt));
}

KvSummary KvCache::summary() const {
  const KvStats st = stats();
  KvSummary s;
  s.mode = cfg_.mode;
  s.n_tokens = st.n_tokens;
  s.bytes = st.bytes;
  s.bytes_reserved = st.bytes_reserved;
  s.bits_per_element = st.bits_per_element;
  s.layers.resize(cfg_.n_layer);
  const int64_t per_token = int64_t{cfg_.n_head_kv} * cfg_.head_dim * 2 * 2;  // K and V, fp16
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const int64_t n = n_tokens(l);
    KvClassStats c;  // kinds: filled in by the session, which knows them per position
    c.name = "fp16";
    c.tokens = n;
    c.bytes = n * per_token;
    s.layers[l].classes.push_back(c);
  }
  return s;
}

}  // namespace akvq::kv
