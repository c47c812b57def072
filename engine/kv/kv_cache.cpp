// KvConfig validation and the factory that picks a storage mode.
#include "kv/kv_cache.h"

#include <string>

#include "akvq/error.h"
#include "kv/kv_f16.h"

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
  if (mode != "f16") {
    throw InvalidArgument("[kv] kv mode '" + mode + "' is not supported (supported: f16)");
  }
  check_range("n_layer", n_layer, 1, kMaxLayers);
  check_range("n_head_kv", n_head_kv, 1, kMaxHeadsKv);
  check_range("head_dim", head_dim, 1, kMaxHeadDim);
  check_range("n_ctx", n_ctx, 1, kMaxCtx);
}

std::unique_ptr<KvCache> KvCache::create(const KvConfig& cfg) {
  cfg.validate();
  return std::make_unique<F16KvCache>(cfg);
}

}  // namespace akvq::kv
