// Causal attention over the quantized caches, on packed data (no dequantized copy).
//
// Tokens are read as a flat index space of spans: [class 0 rows][class 1 rows][pivots]
// [window ring, oldest first][snapshot][staged chunk]. The tokens before the chunk are read as
// they were stored before it arrived: packed rows and pivots when their position is < lo (the
// first position of the snapshot of window tokens this append evicted, else c0), window and
// snapshot rows when < c0 (the first staged position); the chunk is read at full precision with
// the causal limit pos <= n_kv - n_q + i. The query is scaled and rotated
// once (q̃ = H·q·scale); packed K rows are scored with RowCodec::scores_multi, up to kMaxQueries
// query rows (GQA heads, chunk positions) per pass over the codes (kivi2 blocks with
// RowCodec::accumulate over the channel rows), fp16 and f32 rows are converted per block of
// kBlock tokens and scored by dot products. One online softmax (running max m, sum l) merges all
// spans; values accumulate in the rotated basis (RowCodec::accumulate_multi on codes) and the
// accumulator is un-rotated once per row at the end. Work items are (kv head, query block, heads
// of the GQA group, split of the flat space); with few items (decode) and long contexts the flat
// space is split into ranges whose partials (m, l, acc) are merged afterwards (split-K).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "akvq/error.h"
#include "kv/attend_tile.h"
#include "kv/kv_quant_cache.h"
#include "kv/wht.h"

namespace akvq::kv {

namespace {

constexpr int kBlock = 64;     // tokens per tile
constexpr int kRowsItem = 48;  // target query rows per work item
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline int zigzag(int k, int n) { return (k & 1) ? n - 1 - k / 2 : k / 2; }

enum SpanType { kSeg0, kSeg1, kKivi, kPivot, kWin, kSnap, kChunk };
struct Span {
  SpanType type;
  int64_t begin, count;  // flat index range
  int64_t off;           // first row in the store (ring slot for kWin)
};

// Online softmax over a block of scores sr[nb] (masked entries -inf); on return sr holds the
// weights p (0 where masked) and m, l, acc[hd] are rescaled. False when nothing is visible.
inline bool softmax_block(float* sr, int nb, float& m, float& l, float* acc, int hd) {
  std::fill(sr + nb, sr + kBlock, kNegInf);
  const float bmax = tile::max8<kBlock>(sr);
  if (bmax == kNegInf) return false;
  if (bmax > m) {
    const float f = std::exp(m - bmax);
    if (l > 0.0f) {
      for (int d = 0; d < hd; ++d) acc[d] *= f;
    }
    l *= f;
    m = bmax;
  }
  float vis[kBlock];
  for (int j = 0; j < kBlock; ++j) {
    vis[j] = sr[j] > kNegInf ? 1.0f : 0.0f;
    sr[j] = sr[j] > kNegInf ? sr[j] - m : 0.0f;
  }
  tile::exp_nonpos(sr, kBlock);
  for (int j = 0; j < kBlock; ++j) sr[j] *= vis[j];
  l += tile::sum8<kBlock>(sr);
  return true;
}

}  // namespace

void QuantKvCache::attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                          cpu::ThreadPool& pool) const {
  check_layer(layer, "attend");
  const Layer& S = L_[layer];
  const int n_kv = S.n;
  const int hd = cfg_.head_dim;
  const int n_head_kv = cfg_.n_head_kv;
  if (n_q < 1 || n_q > S.n_stage) {
    throw InvalidArgument("[kv] attend: n_q = " + std::to_string(n_q) + " but layer " + std::to_string(layer) +
                          " has " + std::to_string(S.n_stage) + " tokens from its last append");
  }
  if (n_head < n_head_kv || n_head % n_head_kv != 0) {
    throw InvalidArgument("[kv] attend: n_head = " + std::to_string(n_head) + " is not a multiple of n_head_kv = " +
                          std::to_string(n_head_kv));
  }
  const int c0 = n_kv - S.n_stage;                           // first staged position
  const int lo = S.xpos.empty() ? c0 : S.xpos.front();       // packed rows / pivots visible below

  // flat index space
  std::vector<Span> spans;
  int64_t flat = 0;
  auto add = [&](SpanType t, int64_t count, int64_t off) {
    if (count > 0) spans.push_back({t, flat, count, off}), flat += count;
  };
  if (opt_.kivi) {
    add(kKivi, S.seg[0].n(), 0);
  } else {
    add(kSeg0, S.seg[0].n(), 0);
    add(kSeg1, S.seg[1].n(), 0);
  }
  add(kPivot, static_cast<int64_t>(S.ppos.size()), 0);
  if (S.w_count > 0) {
    const int first = std::min(S.w_count, cap_w_ - S.w_head);
    add(kWin, first, S.w_head);
    add(kWin, S.w_count - first, 0);
  }
  add(kSnap, static_cast<int64_t>(S.xpos.size()), 0);
  add(kChunk, S.n_stage, 0);
  std::vector<int64_t> kivi_off(S.kivi.size() + 1, 0);  // first V row of each kivi block
  for (size_t b = 0; b < S.kivi.size(); ++b) kivi_off[b + 1] = kivi_off[b] + S.kivi[b].n_valid;

  const int group = n_head / n_head_kv;
  const int nth = pool.size();
  const int qb = std::max(1, std::min(n_q, kRowsItem / group));
  const int n_qblk = (n_q + qb - 1) / qb;
  const bool can_split = nth > 1 && flat >= 2 * kMinSplit;
  const int hpi = !can_split && n_head_kv * n_qblk < 4 * nth ? 1 : group;
  const int n_sub = group / hpi;
  const int rows_max = qb * hpi;
  const int items = n_head_kv * n_sub * n_qblk;
  int n_split = 1;
  if (can_split && items < 8 * nth) {
    n_split = static_cast<int>(std::min<int64_t>((8 * nth + items - 1) / items, flat / kMinSplit));
  }
  const int64_t chunk = (flat + n_split - 1) / n_split;
  const int64_t pstride = 2 + hd;
  if (n_split > 1) partial_.resize(static_cast<size_t>(n_q) * n_head * n_split * pstride);

  const int ng = std::max(ck_[0].n_groups(), ck_[1].n_groups());
  const size_t per_thread = static_cast<size_t>(rows_max) * (2 * hd + kBlock + 2 + 2 * ng) + 2 * kBlock * hd;
  if (scratch_.size() < static_cast<size_t>(nth)) scratch_.resize(nth);
  for (auto& s : scratch_) {
    if (s.size() < per_thread) s.resize(per_thread);
  }

  pool.run(items * n_split, [&](int task, int thread) {
    const int s = task % n_split;
    const int sub = (task / n_split) % n_sub;
    const int kvh = (task / n_split / n_sub) % n_head_kv;
    const int blk = zigzag(task / n_split / n_sub / n_head_kv, n_qblk);
    const int i0 = blk * qb, i1 = std::min(n_q, i0 + qb);
    const int h0 = kvh * group + sub * hpi;
    const int nr = (i1 - i0) * hpi;
    float* Q = scratch_[thread].data();  // [nr, hd] scaled, rotated queries
    float* S_ = Q + rows_max * hd;       // [nr, kBlock] scores
    float* acc = S_ + rows_max * kBlock; // [nr, hd] (rotated basis)
    float* m = acc + rows_max * hd;      // [nr]
    float* l = m + rows_max;             // [nr]
    float* qs = l + rows_max;            // [nr, 2, ng] group sums of Q per class
    float* Kf = qs + rows_max * 2 * ng;  // [kBlock, hd]
    float* Vf = Kf + kBlock * hd;        // [kBlock, hd]

    for (int r = 0; r < nr; ++r) {
      const int i = i0 + r / hpi, h = h0 + r % hpi;
      const float* qr = q + (static_cast<int64_t>(i) * n_head + h) * hd;
      float* Qr = Q + r * hd;
      for (int d = 0; d < hd; ++d) Qr[d] = qr[d] * scale;
      if (opt_.rotate) wht(Qr, hd);
      if (!opt_.kivi) {
        ck_[0].query_group_sums(Qr, qs + (r * 2) * ng);
        ck_[1].query_group_sums(Qr, qs + (r * 2 + 1) * ng);
      }
      std::fill(acc + r * hd, acc + (r + 1) * hd, 0.0f);
      m[r] = kNegInf;
      l[r] = 0.0f;
    }
    const int64_t f0 = s * chunk, f1 = std::min(flat, f0 + chunk);
    for (const Span& sp : spans) {
      const int64_t a = std::max(f0, sp.begin) - sp.begin, b = std::min(f1, sp.begin + sp.count) - sp.begin;
      if (a >= b) continue;
      if (sp.type == kKivi) {
        const Segment& g = S.seg[0];
        const size_t kb = ck_[0].row_bytes(), vb = cv_[0].row_bytes();
        for (size_t bi = 0; bi < S.kivi.size(); ++bi) {
          const int64_t o0 = kivi_off[bi], o1 = kivi_off[bi + 1];
          if (o1 <= a || o0 >= b) continue;
          const KiviBlock& kbk = S.kivi[bi];
          const int nb = static_cast<int>(o1 - o0);
          for (int r = 0; r < nr; ++r) {
            float* sr = S_ + r * kBlock;
            std::fill(sr, sr + kBlock, 0.0f);
            ck_[0].accumulate(Q + r * hd, kbk.k[kvh].data(), kb, hd, sr);  // sr[32] = Σ_c q̃_c K̂[c, j]
            for (int j = 0; j < nb; ++j) {
              const int64_t t = o0 + j;
              if (t < a || t >= b || g.pos[t] >= lo) sr[j] = kNegInf;
            }
            if (softmax_block(sr, nb, m[r], l[r], acc + r * hd, hd)) {
              cv_[0].accumulate(sr, g.v[kvh].data() + o0 * vb, vb, nb, acc + r * hd);
            }
          }
        }
        continue;
      }
      for (int64_t j0 = a; j0 < b; j0 += kBlock) {
        const int nb = static_cast<int>(std::min<int64_t>(kBlock, b - j0));
        const int32_t* pos = nullptr;
        const Segment* g = nullptr;
        int cls = 0;
        if (sp.type == kSeg0 || sp.type == kSeg1) {
          cls = sp.type == kSeg1 ? 1 : 0;
          g = &S.seg[cls];
          pos = g->pos.data() + j0;
        } else if (sp.type == kPivot || sp.type == kWin || sp.type == kSnap) {
          const bool piv = sp.type == kPivot, win = sp.type == kWin;
          const uint16_t* kb = piv ? S.pk.data() : win ? S.wk.data() : S.xk.data();
          const uint16_t* vb = piv ? S.pv.data() : win ? S.wv.data() : S.xv.data();
          pos = (piv ? S.ppos.data() : win ? S.wpos.data() : S.xpos.data()) + sp.off + j0;
          for (int j = 0; j < nb; ++j) {
            const int64_t row = (sp.off + j0 + j) * row_ + static_cast<int64_t>(kvh) * hd;
            tile::f16_to_f32(kb + row, Kf + j * hd, hd);
            tile::f16_to_f32(vb + row, Vf + j * hd, hd);
          }
        } else {  // chunk (f32, rotated)
          for (int j = 0; j < nb; ++j) {
            const int64_t row = (j0 + j) * row_ + static_cast<int64_t>(kvh) * hd;
            std::copy(S.sk.data() + row, S.sk.data() + row + hd, Kf + j * hd);
            std::copy(S.sv.data() + row, S.sv.data() + row + hd, Vf + j * hd);
          }
        }
        if (g) {  // packed rows: up to kMaxQueries query rows per pass over the codes
          const RowCodec& kc = ck_[cls];
          const RowCodec& vc = cv_[cls];
          for (int r0 = 0; r0 < nr; r0 += kMaxQueries) {
            kc.scores_multi(Q + r0 * hd, hd, qs + (r0 * 2 + cls) * ng, 2 * ng, std::min(kMaxQueries, nr - r0),
                            g->k[kvh].data() + j0 * kc.row_bytes(), kc.row_bytes(), nb, S_ + r0 * kBlock, kBlock);
          }
          // rows stored after the snapshot started (pos >= lo) are hidden from every query row
          bool hidden = false;
          for (int j = 0; j < nb; ++j) hidden |= pos[j] >= lo;
          for (int r = 0; r < nr; ++r) {
            float* sr = S_ + r * kBlock;
            for (int j = 0; hidden && j < nb; ++j) {
              if (pos[j] >= lo) sr[j] = kNegInf;
            }
            if (!softmax_block(sr, nb, m[r], l[r], acc + r * hd, hd)) std::fill(sr, sr + kBlock, 0.0f);
          }
          for (int r0 = 0; r0 < nr; r0 += kMaxQueries) {
            vc.accumulate_multi(S_ + r0 * kBlock, kBlock, std::min(kMaxQueries, nr - r0),
                                g->v[kvh].data() + j0 * vc.row_bytes(), vc.row_bytes(), nb, acc + r0 * hd, hd);
          }
          continue;
        }
        for (int r = 0; r < nr; ++r) {
          const int i = i0 + r / hpi;
          float* sr = S_ + r * kBlock;
          float* ar = acc + r * hd;
          tile::scores_dot(Q + r * hd, Kf, nb, hd, sr);
          if (sp.type == kChunk) {
            const int64_t lim = n_kv - n_q + i;  // last visible position
            for (int j = 0; j < nb; ++j) {
              if (c0 + j0 + j > lim) sr[j] = kNegInf;
            }
          } else {
            const int cut = sp.type == kWin || sp.type == kSnap ? c0 : lo;
            for (int j = 0; j < nb; ++j) {
              if (pos[j] >= cut) sr[j] = kNegInf;
            }
          }
          if (!softmax_block(sr, nb, m[r], l[r], ar, hd)) continue;
          tile::pv(sr, nb, Vf, hd, ar);
        }
      }
    }
    for (int r = 0; r < nr; ++r) {
      const int i = i0 + r / hpi, h = h0 + r % hpi;
      const int64_t pair = static_cast<int64_t>(i) * n_head + h;
      float* ar = acc + r * hd;
      if (n_split == 1) {
        float* o = out + pair * hd;
        const float inv = 1.0f / l[r];
        for (int d = 0; d < hd; ++d) o[d] = ar[d] * inv;
        if (opt_.rotate) wht(o, hd);
      } else {
        float* pp = partial_.data() + (pair * n_split + s) * pstride;
        pp[0] = m[r];
        pp[1] = l[r];
        std::copy(ar, ar + hd, pp + 2);
      }
    }
  });
  if (n_split == 1) return;

  const int64_t pairs = static_cast<int64_t>(n_q) * n_head;
  tile::merge_split_partials(partial_.data(), pairs, n_split, hd, out);
  if (opt_.rotate) {
    for (int64_t r = 0; r < pairs; ++r) wht(out + r * hd, hd);  // back from the rotated basis
  }
}

}  // namespace akvq::kv
