// The quantized KV caches (every mode but f16): AKVQ (akvq2/akvq4), the per-token baselines
// (q8/q4/q2/wht2) and KIVI-2 (kivi2), behind the KvCache interface.
//
// Per layer, per KV head, the cache holds (K rotated by the WHT after RoPE and V rotated, for the
// rotated modes; positions kept for masking and truncation):
//   window  an fp16 ring of the most recent R tokens               [R, n_head_kv, head_dim]
//   pivots  an fp16 store of up to P pivot tokens                  [P, n_head_kv, head_dim]
//   classes packed segments, one per precision class (RowCodec rows), per KV head
//           class 0 "low": non-TSA layers and vision tokens in TSA layers (k_low / v_low)
//           class 1 "tsa": text and generated tokens in TSA layers (k_tsa / v_tsa)
//   kivi2:  K in blocks of 32 tokens quantized per channel (one RowCodec row of 32 values per
//           channel), V per token in class 0; tokens stay in the window until 32 have left it.
// One semantics for every batch split (the state is a function of the tokens): every query at
// position i sees each token j <= i exactly as the cache stores it once token i has been appended
// (what decoding sees). A token is read at fp16 (window ring, pivot store) until its eviction
// time e (the position whose append pushed it out of the window, or displaced it from the
// pivots, or flushed it into a kivi2 block), and from its packed row from e on. Packed rows keep
// e next to their position and are appended in ascending e, so query i reads the rows with
// e <= i. Within one append (a prefill chunk) the tokens that leave fp16 before the last query
// also go to an fp16 snapshot (xk/xv/xpos/xe, transient, not counted in the stats) that the
// chunk's earlier queries read for pos <= i < e. Pivots are decided as a token leaves the
// window, against the median of the layer input's max|x| over positions [0, e] (a running
// median), so the decision does not depend on the chunking either. truncate(n) drops the tokens
// at positions >= n from every store; it does not bring evicted tokens back into the window
// (not exact: Session re-evaluates instead, see Session::eval_prompt), except at a checkpoint
// (checkpoint()), whose copy of the fp16 stores it restores.
#pragma once
#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/kv_options.h"
#include "kv/part_countdown.h"
#include "kv/quant.h"

namespace akvq::kv {

class QuantKvCache final : public KvCache {
 public:
  QuantKvCache(const KvConfig& cfg, KvOptions opt);

  int n_tokens(int layer = 0) const override;
  void clear() override;
  void truncate(int n) override;
  // Exact only when no token before n has changed store since time n: without a window and
  // pivots (every token is quantized as it arrives) any n; otherwise n_tokens(), any n while
  // nothing has left the window yet, or the checkpoint's length when it is <= n.
  int restorable(int n) const override;
  // With the `checkpoint` option: copies the window ring and the pivot store of every layer (the
  // only state that later appends overwrite; packed rows are appended in ascending eviction time,
  // so those of time >= c are exactly the ones to drop). truncate(c) then restores the copy.
  void checkpoint() override;
  void append(int layer, const float* k, const float* v, int n_new) override;
  void attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
              cpu::ThreadPool& pool) const override;
  KvStats stats() const override;
  // fp16 for the first min(n, window + pivots) tokens, the rest at the layer's dearest class
  // (kivi2: K blocks of 32 tokens, V rows); with the checkpoint option, plus the checkpoint's
  // copy of window + pivots rows.
  int64_t bytes_bound(int n_tokens) const override;
  KvSummary summary() const override;
  void observe(int layer, const float* x, int n, int n_embd) override;
  void observe_amax(int layer, const float* amax, int n) override;
  bool wants_observe() const override { return opt_.pivots > 0; }
  void set_kinds(const TokenKind* kinds, int n) override;

  const KvOptions& options() const { return opt_; }
  bool is_tsa(int layer) const { return tsa_[layer] != 0; }
  // Packed rows per split-K part (parts: fixed row ranges of each segment from its start, then the
  // fp16 tokens; merged in order in decode and prefill alike). A multiple of 64 and of 32.
  static constexpr int64_t kPartRows = 1024;

  // Read access for tests (layer l, KV head h): the rows of class c, their positions, etc.
  struct Segment {
    std::vector<int32_t> pos;                // [n] token positions (ascending except displaced pivots)
    std::vector<int32_t> evict;              // [n] eviction times e (ascending): read by queries i >= e
    std::vector<std::vector<uint8_t>> k, v;  // [n_head_kv][n * row bytes]
    int n() const { return static_cast<int>(pos.size()); }
  };
  struct KiviBlock {    // kivi2 K: kKiviBlock tokens, per head hd rows of 32 values
    int32_t pos0 = 0;   // first position (tokens pos0 .. pos0 + n_valid - 1)
    int32_t evict = 0;  // eviction time of its tokens
    int n_valid = 0;
    std::vector<std::vector<uint8_t>> k;  // [n_head_kv][hd * row bytes]
  };
  struct Layer {
    int n = 0;                     // tokens appended (positions 0 .. n-1)
    std::vector<uint16_t> wk, wv;  // [cap_w, n_head_kv, head_dim] fp16 ring
    std::vector<int32_t> wpos;     // [cap_w]
    int w_head = 0, w_count = 0;   // oldest slot, tokens in the ring
    std::vector<uint16_t> pk, pv;  // [n_piv, n_head_kv, head_dim]
    std::vector<int32_t> ppos;     // [n_piv]
    std::vector<float> pscore;     // [n_piv] max |x| of each pivot
    Segment seg[2];
    std::vector<KiviBlock> kivi;  // kivi2 K blocks (V rows in seg[0])
    std::vector<float> sk, sv;    // staged chunk [n_stage, n_head_kv, head_dim] (rotated) f32
    int n_stage = 0;
    std::vector<uint16_t> xk, xv;       // [n_snap, n_head_kv, head_dim] tokens that left fp16 during
    std::vector<int32_t> xpos, xe;      // the last append before its last query: positions, eviction times
    std::vector<float> amax;            // [observed] per-token max |x| of the layer input
    std::vector<float> med_lo, med_hi;  // running median of amax[0, n_med): max-heap, min-heap
    int n_med = 0;
  };
  const Layer& layer_state(int l) const { return L_[l]; }
  const RowCodec& codec_k(int c) const { return ck_[c]; }
  const RowCodec& codec_v(int c) const { return cv_[c]; }
  int window_cap() const { return cap_w_; }

 private:
  void check_layer(int layer, const char* what) const;
  void evict(int layer, const float* k, const float* v, const uint16_t* k16, const uint16_t* v16, int32_t pos,
             int32_t t, std::vector<float>& tmp);
  void store(int layer, int cls, const float* k, const float* v, int32_t pos, int32_t t);
  void snapshot(Layer& S, const uint16_t* k, const uint16_t* v, int32_t pos, int32_t t);
  void flush_kivi(int layer, int32_t t);
  void median_push(Layer& S, int32_t pos);
  static float median(const Layer& S);
  int64_t layer_bytes(int l, std::vector<KvClassStats>* classes) const;

  // The fp16 stores of every layer at time n (checkpoint()); n < 0: none.
  struct Checkpoint {
    struct Stores {
      std::vector<uint16_t> wk, wv, pk, pv;
      std::vector<int32_t> wpos, ppos;
      std::vector<float> pscore;
      int w_head = 0, w_count = 0;
    };
    int n = -1;
    std::vector<Stores> layers;
    int64_t bytes() const;
  };
  void restore_checkpoint();
  void set_length(Layer& S, int n);

  KvOptions opt_;
  Checkpoint ckpt_;
  int64_t row_;                    // n_head_kv * head_dim
  int cap_w_;                      // ring capacity (window, + one kivi block for kivi2)
  std::vector<char> tsa_;          // [n_layer]
  std::vector<RowCodec> ck_, cv_;  // [2] class codecs (kivi2: ck_[0] works on 32-token rows)
  std::vector<Layer> L_;
  std::vector<uint8_t> kinds_;  // [positions] TokenKind
  mutable std::vector<float> partial_;
  // attend's lists, kept so that a decode step's calls (one per layer) reuse their storage:
  // the split-K parts, the fp16 tokens in position order, the first V row of each kivi2 block,
  // and per work item the count of its parts still running (the last one merges the item's rows)
  enum PartType { kSeg0, kSeg1, kKivi, kF16 };
  struct Part {
    PartType type;
    int64_t a, b;  // packed rows [a, b) of the segment, or kivi2 blocks [a, b); none for kF16
  };
  struct F16Ref {
    int32_t pos, e;         // visible to queries at positions pos <= p < e
    const uint16_t *k, *v;  // [n_head_kv, head_dim]
  };
  mutable std::vector<Part> parts_;
  mutable std::vector<F16Ref> f16_;
  mutable std::vector<int64_t> kivi_off_;
  mutable tile::PartCountdown parts_left_;
  // attend's queries prepared once per call when they are few (decode): per (query row, head) the
  // scaled, rotated query and its group sums, and per class its score tables (LutQuery)
  mutable std::vector<float> qprep_;
  mutable std::vector<uint64_t> qtab_;
  mutable std::vector<LutQuery> qlut_;
  mutable std::vector<std::vector<float>> scratch_;
};

}  // namespace akvq::kv
