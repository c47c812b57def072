// Causal attention over the f16 cache: tiled, block-wise online softmax.
//
// A work item is (kv head, block of queries, split of the sequence). Its rows are the query
// heads that share the kv head (GQA group) for each query in the block, so every K/V block is
// converted to f32 once and reused by all rows (with few queries, e.g. decode, an item takes
// one head so that the threads get enough items). Per block of kBlock cached tokens:
//   S[r, j] = (scale q_r) · K[j]         (same summation order for any batching: prefill and
//                                          decode give bit-identical rows below the split-K size)
//   m_r' = max(m_r, max_j S[r, j]);  acc_r *= exp(m_r - m_r');  l_r *= exp(m_r - m_r')
//   P = exp(S - m_r');  l_r += Σ_j P[r, j];  acc_r += Σ_j P[r, j] V[j]
// Query i sees cached tokens [0, n_kv - n_q + i]. With few items for the threads (decode), the
// sequence is split into ranges whose partials (m, l, acc) are merged afterwards (split-K).
#if defined(__GNUC__) && !defined(__clang__)
// Compare-selects (max, clamps) only vectorize when comparisons may not trap; no value changes.
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "akvq/error.h"
#include "kv/attend_rows_avx512.h"
#include "kv/attend_tile.h"
#include "kv/kv_f16.h"

namespace akvq::kv {

namespace {

// Split-K over fixed ranges of positions [k * kPartTokens, (k + 1) * kPartTokens): each range runs
// its own online softmax and the partials are merged in range order, always (decode and prefill
// alike), so a query's output depends on its position alone, bit for bit.

constexpr int kBlock = 64;     // cached tokens per tile
constexpr int kRowsItem = 48;    // target query rows (queries x group) per work item
constexpr int kInPlaceRows = 8;  // rows per KV head up to which K/V are read in place (no f32 copy)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Query-block order that pairs short and long causal blocks (0, n-1, 1, n-2, ...).
inline int zigzag(int k, int n) {
  return (k & 1) ? n - 1 - k / 2 : k / 2;
}

}  // namespace

void F16KvCache::attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                        cpu::ThreadPool& pool) const {
  check_layer(layer, "attend");
  const int n_kv = n_[layer];
  const int hd = cfg_.head_dim;
  const int n_head_kv = cfg_.n_head_kv;
  if (n_q < 1 || n_q > n_kv) {
    throw InvalidArgument("[kv] attend: n_q = " + std::to_string(n_q) + " but layer " + std::to_string(layer) +
                          " holds " + std::to_string(n_kv) + " tokens");
  }
  if (n_head < n_head_kv || n_head % n_head_kv != 0) {
    throw InvalidArgument("[kv] attend: n_head = " + std::to_string(n_head) +
                          " is not a multiple of n_head_kv = " + std::to_string(n_head_kv));
  }
  const int group = n_head / n_head_kv;
  const int nth = pool.size();
  const int qb = std::max(1, std::min(n_q, kRowsItem / group));  // queries per item
  const int n_qblk = (n_q + qb - 1) / qb;
  const int n_split = (n_kv + kPartTokens - 1) / kPartTokens;  // position ranges (split-K)
  const int chunk = kPartTokens;                                 // tokens per range
  // Heads per item: the GQA group's heads share each K/V block's conversion, split into smaller
  // items only where that shortens the step (tile::heads_per_item). A row's arithmetic is the same
  // either way.
  const int hpi = tile::heads_per_item(group, n_head_kv * n_qblk * n_split, nth);
  const int n_sub = group / hpi;  // items per (kv head, query block)
  // KV heads per item: with few queries (decode) and whole groups per item, consecutive KV heads
  // share an item where that does not lengthen the step, so the item reads each token's K/V row
  // in one contiguous run that the hardware prefetcher follows, instead of hd halves out of every
  // n_head_kv * hd (memory-bound there; prefill's blocks are reused by many rows).
  const int kpi = (n_sub == 1 && n_qblk == 1) ? tile::kv_heads_per_item(n_head_kv, hd, n_split, nth) : 1;
  const int n_grp = n_head_kv / kpi;  // KV head runs
  const int rows_head = qb * hpi;     // rows per KV head of an item
  const int rows_max = rows_head * kpi;
  const int items = n_grp * n_sub * n_qblk;
  const int64_t pstride = 2 + hd;                    // partial: m, l, acc[hd]
  // grown only: a resize down and up again zero-fills
  const size_t n_partial = static_cast<size_t>(n_q) * n_head * n_split * pstride;
  if (n_split > 1 && partial_.size() < n_partial) partial_.resize(n_partial);

  // per-thread scratch: Q rows, scores, acc, m, l, K blocks, V blocks
  const size_t per_thread = static_cast<size_t>(rows_max) * (2 * hd + kBlock + 2) + 2 * kBlock * hd * kpi;
  if (scratch_.size() < static_cast<size_t>(nth)) scratch_.resize(nth);
  for (auto& s : scratch_) {
    if (s.size() < per_thread) s.resize(per_thread);
  }
  const uint16_t* kbase = k_[layer].data();
  const uint16_t* vbase = v_[layer].data();
  const int64_t stride = row_;

  // The last of an item's parts to finish merges the item's rows (part_countdown.h).
  if (n_split > 1) parts_left_.reset(items, n_split);
  pool.run(items * n_split, [&](int task, int thread) {
    const int s = task % n_split;
    const int sub = (task / n_split) % n_sub;
    const int kvh0 = (task / n_split / n_sub) % n_grp * kpi;  // first KV head of this item
    const int blk = zigzag(task / n_split / n_sub / n_grp, n_qblk);
    const int i0 = blk * qb, i1 = std::min(n_q, i0 + qb);
    const int nrh = (i1 - i0) * hpi;  // rows per KV head
    const int nr = nrh * kpi;
    float* Q = scratch_[thread].data();  // [nr, hd] scaled queries
    float* S = Q + rows_max * hd;        // [nr, kBlock] scores
    float* acc = S + rows_max * kBlock;  // [nr, hd]
    float* m = acc + rows_max * hd;      // [nr]
    float* l = m + rows_max;             // [nr]
    float* Kf = l + rows_max;            // [kpi, kBlock, hd] K blocks in f32
    float* Vf = Kf + kpi * kBlock * hd;  // [kpi, kBlock, hd] V blocks in f32

    // row r = (KV head kvh0 + r / nrh; query i0 + (r % nrh) / hpi, head (kvh0 + r / nrh) * group
    // + sub * hpi + r % hpi)
    const auto row_query = [&](int r) { return i0 + (r % nrh) / hpi; };
    const auto row_head = [&](int r) { return (kvh0 + r / nrh) * group + sub * hpi + r % hpi; };
    for (int r = 0; r < nr; ++r) {
      const float* qr = q + (static_cast<int64_t>(row_query(r)) * n_head + row_head(r)) * hd;
      for (int d = 0; d < hd; ++d) Q[r * hd + d] = qr[d] * scale;
      std::fill(acc + r * hd, acc + (r + 1) * hd, 0.0f);
      m[r] = kNegInf;
      l[r] = 0.0f;
    }
    const int t0 = s * chunk;
    const int vis_last = n_kv - n_q + i1;  // tokens visible to the last query of the block
    const int t1 = std::min(t0 + chunk, vis_last);
    const int width = kpi * hd;  // contiguous halves per token row read by this item
    // Few rows per KV head (decode), and a conversion instruction: the rows read K/V in place,
    // converting in registers, rather than storing the block in f32 first; the values and their
    // order are the same.
    const bool in_place = tile::kHardwareF16 && nrh <= kInPlaceRows;
    // In place, one query and several heads per KV head (GQA decode): the heads share each row.
    const bool shared_rows = in_place && i1 - i0 == 1 && nrh > 1 && hd % 8 == 0;
    const uint16_t* kh = kbase + static_cast<int64_t>(kvh0) * hd;
    const uint16_t* vh = vbase + static_cast<int64_t>(kvh0) * hd;

    for (int b = t0; b < t1; b += kBlock) {
      const int nb = std::min(kBlock, t1 - b);
      // The block's K/V rows requested at its start, before the first is read. The shared-row
      // kernels request the next block's rows while they score this one (tile::Ahead), so there
      // only the first block is requested here. Into the L2, as tile::Ahead does: the block's rows
      // of an item's KV heads (SmolLM2: 2 x 24 KB) crowd an L1 of 32 KB, and the L1 requests
      // stalled the item's start (step-level A/B on a 2-core Zen 4, bench/RESULTS.md: SmolLM2
      // batch 8 +1.9%, batch 1 +1.4%, one sequence at depth 8192 +8.5%).
      if (!shared_rows || b == t0) {
        for (int j = b; j < b + nb; ++j) {
          tile::prefetch_row<true>(kh + j * stride, width);
          tile::prefetch_row<true>(vh + j * stride, width);
        }
      }
      for (int j = 0; j < nb; ++j) {
        if (in_place) continue;
        for (int c = 0; c < kpi; ++c) {
          tile::f16_to_f32(kh + (b + j) * stride + c * hd, Kf + (c * kBlock + j) * hd, hd);
          tile::f16_to_f32(vh + (b + j) * stride + c * hd, Vf + (c * kBlock + j) * hd, hd);
        }
      }
      // Online-softmax update of row r from its scores sr[0, nbr) (the rest of the block masked):
      // the running max, the rescale of acc and l, then P = exp(S - m) in sr and l += Σ P.
      const auto softmax_block = [&](int r, int nbr) {
        float* sr = S + r * kBlock;
        std::fill(sr + nbr, sr + kBlock, kNegInf);  // masked / beyond the block
        const float bmax = tile::max8(sr, kBlock);
        float* ar = acc + r * hd;
        if (bmax > m[r]) {
          const float f = std::exp(m[r] - bmax);  // 0 on the first block
          if (l[r] > 0.0f) {
            for (int d = 0; d < hd; ++d) ar[d] *= f;
          }
          l[r] *= f;
          m[r] = bmax;
        }
        const float mr = m[r];
        for (int j = 0; j < kBlock; ++j) sr[j] -= mr;
        tile::exp_nonpos(sr, kBlock);
        std::fill(sr + nbr, sr + kBlock, 0.0f);
        l[r] += tile::sum8(sr, kBlock);
      };
      if (shared_rows) {
        // One query, nrh heads per KV head: each K/V row converted once for the head's nrh rows.
        const int nbr = std::min(nb, n_kv - n_q + i0 + 1 - b);
        if (nbr <= 0) continue;
        for (int c = 0; c < kpi; ++c) {
          const int r0 = c * nrh;
          const uint16_t* kc = kh + b * stride + c * hd;
          const uint16_t* vc = vh + b * stride + c * hd;
          // this head's rows of the next block (none past the range: no pointer is formed there)
          const int n_next = std::min(kBlock, t1 - b - kBlock);
          const tile::Ahead ahead =
              n_next > 0 ? tile::Ahead{kc + kBlock * stride, vc + kBlock * stride, stride, hd, n_next} : tile::Ahead{};
          const uint16_t* kr[kBlock];
          const uint16_t* vr[kBlock];
          for (int j = 0; j < nbr; ++j) kr[j] = kc + j * stride, vr[j] = vc + j * stride;
          tile512::scores_rows_h(nrh, Q + r0 * hd, hd, kr, nbr, hd, S + r0 * kBlock, kBlock, ahead);
          for (int r = r0; r < r0 + nrh; ++r) softmax_block(r, nbr);
          tile512::pv_rows_h(nrh, S + r0 * kBlock, kBlock, nbr, vr, hd, acc + r0 * hd, hd);
        }
        continue;
      }
      for (int r = 0; r < nr; ++r) {
        const int i = row_query(r);
        const int nbr = std::min(nb, n_kv - n_q + i + 1 - b);  // causal limit of this row
        if (nbr <= 0) continue;
        const int c = r / nrh;  // KV head of the item
        float* sr = S + r * kBlock;
        const float* qr = Q + r * hd;
        if (in_place) {
          tile::scores_dot_h(qr, kh + b * stride + c * hd, nbr, hd, stride, sr);
        } else {
          tile::scores_dot(qr, Kf + c * kBlock * hd, nbr, hd, sr);
        }
        softmax_block(r, nbr);
        float* ar = acc + r * hd;
        if (in_place) {
          tile::pv_h(sr, nbr, vh + b * stride + c * hd, hd, stride, ar);
        } else {
          tile::pv(sr, nbr, Vf + c * kBlock * hd, hd, ar);
        }
      }
    }
    for (int r = 0; r < nr; ++r) {
      const int64_t pair = static_cast<int64_t>(row_query(r)) * n_head + row_head(r);
      const float* ar = acc + r * hd;
      if (n_split == 1) {
        float* o = out + pair * hd;
        const float inv = 1.0f / l[r];
        for (int d = 0; d < hd; ++d) o[d] = ar[d] * inv;
      } else {
        float* pp = partial_.data() + (pair * n_split + s) * pstride;
        pp[0] = m[r];
        pp[1] = l[r];
        std::copy(ar, ar + hd, pp + 2);
      }
    }
    if (n_split == 1 || !parts_left_.last(task / n_split)) return;
    for (int r = 0; r < nr; ++r) {  // the item's last part: its rows
      const int64_t pair = static_cast<int64_t>(row_query(r)) * n_head + row_head(r);
      tile::merge_split_partials(partial_.data() + pair * n_split * pstride, 1, n_split, hd, out + pair * hd);
    }
  });
}

}  // namespace akvq::kv
