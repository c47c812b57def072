// The f16 KV cache: K and V stored as IEEE half per layer, layout [n_tokens, n_head_kv, head_dim]
// (one row of n_head_kv*head_dim values per token). Storage grows on demand (capacity doubles,
// capped at n_ctx), so a large n_ctx costs no memory before it is used.
#pragma once
#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/part_countdown.h"

namespace akvq::kv {

class F16KvCache final : public KvCache {
 public:
  explicit F16KvCache(const KvConfig& cfg);

  int n_tokens(int layer = 0) const override;
  void clear() override;
  void truncate(int n) override;
  void append(int layer, const float* k, const float* v, int n_new) override;
  void attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
              cpu::ThreadPool& pool) const override;
  KvStats stats() const override;
  int64_t bytes_bound(int n_tokens) const override;

  // Tokens per split-K range: ranges [k * kPartTokens, (k + 1) * kPartTokens) of positions run
  // their own online softmax and are merged in order, in decode and prefill alike.
  static constexpr int kPartTokens = 1024;

 private:
  void check_layer(int layer, const char* what) const;
  void reserve(int layer, int n_tokens);

  int64_t row_;                              // values per token: n_head_kv * head_dim
  std::vector<int> n_;                       // [n_layer] tokens stored
  std::vector<int> cap_;                     // [n_layer] tokens allocated
  std::vector<std::vector<uint16_t>> k_;     // [n_layer][cap, n_head_kv, head_dim]
  std::vector<std::vector<uint16_t>> v_;     // [n_layer][cap, n_head_kv, head_dim]
  mutable std::vector<float> partial_;       // split-K partials [n_q, n_head, n_split, 2 + head_dim]
  mutable tile::PartCountdown parts_left_;   // per work item, its parts still running (attend)
  mutable std::vector<std::vector<float>> scratch_;  // [threads] attention tiles (see attend)
};

}  // namespace akvq::kv
