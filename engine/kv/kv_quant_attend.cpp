// Causal attention over the quantized caches, on packed data (no dequantized copy).
//
// Tokens are read as a flat index space of spans: [class 0 rows][class 1 rows][pivots]
// [window ring, oldest first][snapshot]. Query row i (position p_i = n_kv - n_q + i) reads every
// token as the cache stores it once p_i has been appended (kv_quant_cache.h): packed rows with
// eviction time e <= p_i, pivots and window tokens with pos <= p_i, snapshot tokens with
// pos <= p_i < e. The query is scaled and rotated
// once (q̃ = H·q·scale); packed K rows are scored with RowCodec::scores_multi, up to kMaxQueries
// query rows (GQA heads, chunk positions) per pass over the codes (kivi2 blocks with
// RowCodec::accumulate over the channel rows), fp16 rows are read in place (converted in
// registers) in blocks of kBlock tokens and scored by dot products. One online softmax (running max m, sum l) merges all
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
#include "kv/attend_rows_avx512.h"
#include "kv/attend_tile.h"
#include "kv/kv_quant_cache.h"
#include "kv/wht.h"

namespace akvq::kv {

namespace {


constexpr int kHeadRows = 64;  // packed K rows requested at a part's start (see the requests in attend)
constexpr int kBlock = 512;    // tokens per tile (kernel call and softmax block; 64 cost ~8% at depth in per-call overhead)
constexpr int kRowsItem = 48;  // target query rows per work item
// Query rows x heads up to which attend prepares every query once per call (the calling thread:
// scale, rotation, group sums, score tables) instead of once per work item and table call: a
// decode step's one row. SmolLM2, ten sequences at 3584 tokens: the tables alone were 2.7% of a
// step, built for every 512-row block of every split-K part.
constexpr int kPrepRows = 64;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline int zigzag(int k, int n) {
  return (k & 1) ? n - 1 - k / 2 : k / 2;
}

constexpr int kSharedRowsMax = 16;  // heads per item that read the fp16 rows together (attend_tile.h)


// Online softmax over a block of scores sr[nb] (masked entries -inf); on return sr[0:nb] holds the
// weights p (0 where masked) and m, l, acc[hd] are rescaled. False when nothing is visible.
inline bool softmax_block(float* sr, int nb, float& m, float& l, float* acc, int hd) {
  // the entries past n8 would add 0 to l and -inf to the max (an empty block: 8 entries of -inf)
  const int n8 = std::max(8, (nb + 7) & ~7);
  std::fill(sr + nb, sr + n8, kNegInf);
  const float bmax = tile::max8(sr, n8);
  if (bmax == kNegInf) return false;
  if (bmax > m) {
    const float f = std::exp(m - bmax);
    if (l > 0.0f) {
      for (int d = 0; d < hd; ++d) acc[d] *= f;
    }
    l *= f;
    m = bmax;
  }
  l += tile::exp_visible_sum(sr, n8, m);
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
    throw InvalidArgument("[kv] attend: n_head = " + std::to_string(n_head) +
                          " is not a multiple of n_head_kv = " + std::to_string(n_head_kv));
  }
  const int c0 = n_kv - n_q;  // position of query row 0

  // Parts: fixed ranges of each store, kPartRows packed rows (kivi2: whole K blocks) from its
  // start, then the fp16 tokens. Each part runs its own online softmax and the parts' partials
  // are merged in this order; a query's parts depend on its position alone (the stores only grow
  // at their ends), so decode and prefill give the same bits. Parts run in parallel (split-K).
  std::vector<Part>& parts = parts_;
  parts.clear();
  if (opt_.kivi) {
    const int64_t nblk = static_cast<int64_t>(S.kivi.size()), per = kPartRows / defaults::kKiviBlock;
    for (int64_t a = 0; a < nblk; a += per) parts.push_back({kKivi, a, std::min(nblk, a + per)});
  } else {
    for (int c = 0; c < 2; ++c) {
      const int64_t n = S.seg[c].n();
      for (int64_t a = 0; a < n; a += kPartRows) parts.push_back({c ? kSeg1 : kSeg0, a, std::min(n, a + kPartRows)});
    }
  }
  parts.push_back({kF16, 0, 0});
  const int n_part = static_cast<int>(parts.size());
  // fp16 tokens (pivots, window, snapshot) in position order: each query reads the ones it sees
  // in this order, in blocks of kBlock, so that decode and prefill sum them identically
  std::vector<F16Ref>& f16 = f16_;
  f16.clear();
  constexpr int32_t kNever = std::numeric_limits<int32_t>::max();
  for (size_t j = 0; j < S.ppos.size(); ++j) f16.push_back({S.ppos[j], kNever, &S.pk[j * row_], &S.pv[j * row_]});
  for (int j = 0; j < S.w_count; ++j) {
    const int slot = (S.w_head + j) % cap_w_;
    f16.push_back({S.wpos[slot], kNever, &S.wk[slot * row_], &S.wv[slot * row_]});
  }
  for (size_t j = 0; j < S.xpos.size(); ++j) f16.push_back({S.xpos[j], S.xe[j], &S.xk[j * row_], &S.xv[j * row_]});
  const auto by_pos = [](const F16Ref& x, const F16Ref& y) { return x.pos < y.pos; };
  if (!std::is_sorted(f16.begin(), f16.end(), by_pos)) std::sort(f16.begin(), f16.end(), by_pos);
  std::vector<int64_t>& kivi_off = kivi_off_;  // first V row of each kivi block
  kivi_off.assign(S.kivi.size() + 1, 0);
  for (size_t b = 0; b < S.kivi.size(); ++b) kivi_off[b + 1] = kivi_off[b] + S.kivi[b].n_valid;

  const int group = n_head / n_head_kv;
  const int nth = pool.size();
  const int qb = std::max(1, std::min(n_q, kRowsItem / group));
  const int n_qblk = (n_q + qb - 1) / qb;
  // Heads per item: the GQA group's heads share each pass over the codes, split into smaller items
  // only where that shortens the step (tile::heads_per_item). A row's arithmetic is the same either
  // way, only the work split changes.
  const int hpi = tile::heads_per_item(group, n_head_kv * n_qblk * n_part, nth);
  const int n_sub = group / hpi;
  const int rows_max = qb * hpi;
  const int items = n_head_kv * n_sub * n_qblk;
  const int64_t pstride = 2 + hd;
  // grown only: the layers' part counts differ, and a resize down and up again zero-fills
  const size_t n_partial = static_cast<size_t>(n_q) * n_head * n_part * pstride;
  if (n_part > 1 && partial_.size() < n_partial) partial_.resize(n_partial);

  const int ng = std::max(ck_[0].n_groups(), ck_[1].n_groups());
  const size_t per_thread = static_cast<size_t>(rows_max) * (2 * hd + kBlock + 2 + 2 * ng);
  if (scratch_.size() < static_cast<size_t>(nth)) scratch_.resize(nth);
  for (auto& s : scratch_) {
    if (s.size() < per_thread) s.resize(per_thread);
  }

  // Q̃[hd] = H·q·scale and its group sums qsum[2·ng] (class 0, then class 1) for the query row qr
  const auto prepare = [&](const float* qr, float* Qr, float* qsum) {
    for (int d = 0; d < hd; ++d) Qr[d] = qr[d] * scale;
    if (opt_.rotate) wht(Qr, hd);
    if (!opt_.kivi) {
      ck_[0].query_group_sums(Qr, qsum);
      ck_[1].query_group_sums(Qr, qsum + ng);
    }
  };
  // decode: the queries prepared once (kPrepRows); the items copy them
  const int n_pairs = n_q * n_head;
  const bool prep = n_pairs <= kPrepRows;
  const int qrow = hd + 2 * ng;  // qprep_ row: Q̃[hd], group sums of class 0 and 1
  if (prep) {
    if (qprep_.size() < static_cast<size_t>(n_pairs) * qrow) qprep_.resize(static_cast<size_t>(n_pairs) * qrow);
    size_t tb[2] = {0, 0};
    for (int c = 0; c < 2; ++c) {
      if (!opt_.kivi && ck_[c].lut_scores() && S.seg[c].n() > 0) tb[c] = (ck_[c].lut_query_bytes() + 63) & ~size_t{63};
    }
    const size_t words = (static_cast<size_t>(n_pairs) * (tb[0] + tb[1]) + 64) / 8;
    if (qtab_.size() < words) qtab_.resize(words);
    if (qlut_.size() < static_cast<size_t>(n_pairs) * 2) qlut_.resize(static_cast<size_t>(n_pairs) * 2);
    uint8_t* tab = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(qtab_.data()) + 63) & ~uintptr_t{63});
    for (int pr = 0; pr < n_pairs; ++pr) {
      float* Qr = qprep_.data() + static_cast<size_t>(pr) * qrow;
      prepare(q + static_cast<int64_t>(pr) * hd, Qr, Qr + hd);
      for (int c = 0; c < 2; ++c) {
        if (tb[c] == 0) continue;
        qlut_[pr * 2 + c] = ck_[c].lut_prepare(Qr, tab);
        tab += tb[c];
      }
    }
  }

  // The last of an item's parts to finish merges the item's rows (merge order fixed: the parts
  // in order), so the merges run on the threads while other items still run, not after the job.
  if (n_part > 1) parts_left_.reset(items, n_part);
  pool.run(items * n_part, [&](int task, int thread) {
    const int s = task % n_part;
    const Part& pt = parts[s];
    const int sub = (task / n_part) % n_sub;
    const int kvh = (task / n_part / n_sub) % n_head_kv;
    const int blk = zigzag(task / n_part / n_sub / n_head_kv, n_qblk);
    const int i0 = blk * qb, i1 = std::min(n_q, i0 + qb);
    const int h0 = kvh * group + sub * hpi;
    const int nr = (i1 - i0) * hpi;
    float* Q = scratch_[thread].data();   // [nr, hd] scaled, rotated queries
    float* S_ = Q + rows_max * hd;        // [nr, kBlock] scores
    float* acc = S_ + rows_max * kBlock;  // [nr, hd] (rotated basis)
    float* m = acc + rows_max * hd;       // [nr]
    float* l = m + rows_max;              // [nr]
    float* qs = l + rows_max;             // [nr, 2, ng] group sums of Q per class
    const uint16_t* Kp[kBlock];           // the fp16 block's K rows of this KV head
    const uint16_t* Vp[kBlock];           // and its V rows

    for (int r = 0; r < nr; ++r) {
      const int i = i0 + r / hpi, h = h0 + r % hpi;
      float* Qr = Q + r * hd;
      if (prep) {
        const float* P = qprep_.data() + (static_cast<size_t>(i) * n_head + h) * qrow;
        std::copy(P, P + hd, Qr);
        if (!opt_.kivi) std::copy(P + hd, P + hd + 2 * ng, qs + (r * 2) * ng);
      } else {
        prepare(q + (static_cast<int64_t>(i) * n_head + h) * hd, Qr, qs + (r * 2) * ng);
      }
      std::fill(acc + r * hd, acc + (r + 1) * hd, 0.0f);
      m[r] = kNegInf;
      l[r] = 0.0f;
    }
    if (pt.type == kKivi) {
        const Segment& g = S.seg[0];
        const size_t kb = ck_[0].row_bytes(), vb = cv_[0].row_bytes();
        for (int64_t bi = pt.a; bi < pt.b; ++bi) {
          const int64_t o0 = kivi_off[bi], o1 = kivi_off[bi + 1];
          const KiviBlock& kbk = S.kivi[bi];
          if (kbk.evict > c0 + i1 - 1) break;  // no query row of the item sees this block
          const int nb = static_cast<int>(o1 - o0);
          for (int r = 0; r < nr; ++r) {
            const int i = i0 + r / hpi;
            float* sr = S_ + r * kBlock;
            std::fill(sr, sr + ck_[0].n(), 0.0f);  // the block's scores (kKiviBlock tokens)
            ck_[0].accumulate(Q + r * hd, kbk.k[kvh].data(), kb, hd, sr);  // sr[32] = Σ_c q̃_c K̂[c, j]
            for (int j = 0; j < nb; ++j) {
              const int64_t t = o0 + j;
              if (g.evict[t] > c0 + i) sr[j] = kNegInf;
            }
            if (softmax_block(sr, nb, m[r], l[r], acc + r * hd, hd)) {
              cv_[0].accumulate(sr, g.v[kvh].data() + o0 * vb, vb, nb, acc + r * hd);
            }
          }
        }
    } else if (pt.type != kF16) {
      const int cls = pt.type == kSeg1 ? 1 : 0;
      const Segment& g = S.seg[cls];
      const RowCodec& kc = ck_[cls];
      const RowCodec& vc = cv_[cls];
      for (int64_t j0 = pt.a; j0 < pt.b; j0 += kBlock) {  // packed rows, up to kMaxQueries rows per pass
        const int nb = static_cast<int>(std::min<int64_t>(kBlock, pt.b - j0));
        const int32_t* ev = g.evict.data() + j0;  // eviction times, ascending
        if (ev[0] > c0 + i1 - 1) break;           // no query row of the item sees these rows
        // Memory requests, so that the K and V rows stream ahead of the kernels at an even rate:
        // - the part's first kHeadRows K rows at its start;
        // - while the block's K rows are scored: its V rows, and K rows kHeadRows ahead of the
        //   scores (this block's rest, then the next block's first kHeadRows);
        // - while its V rows are accumulated: the rest of the next block's K rows.
        // The kernels spread a span's requests over their rows (RowsAhead). More requests at once
        // than the core keeps in flight stall it: perf put a third of the table scores' samples
        // on requests and first loads when the part's whole first block was requested at its
        // start and all next-block K rows during the scores. SmolLM2, akvq2, Zen 4, against
        // that (and the headers gathered): decode steps 5.4% shorter for one sequence at depth
        // 8192 and for ten at 3840 (bench/RESULTS.md).
        const size_t kb = kc.row_bytes();
        RowsAhead ahead, acc_ahead;
        const auto k_span = [&](RowsAhead& a, int64_t r0, int64_t r1) {  // K rows [r0, r1) of the part
          r0 = std::min(r0, pt.b), r1 = std::min(r1, pt.b);
          if (r1 > r0) a.p[0] = g.k[kvh].data() + r0 * kb, a.n[0] = (r1 - r0) * kb;
        };
        const int64_t head = std::min<int64_t>(nb, kHeadRows);
        if (j0 == pt.a) tile::prefetch_span(g.k[kvh].data() + j0 * kb, head * kb);
        k_span(ahead, j0 == pt.a ? j0 + head : j0 + nb, j0 + nb + head);
        k_span(acc_ahead, j0 + nb + head, j0 + 2 * static_cast<int64_t>(nb));
        ahead.p[1] = g.v[kvh].data() + j0 * vc.row_bytes(), ahead.n[1] = nb * vc.row_bytes();
        for (int r0 = 0; r0 < nr; r0 += kMaxQueries) {  // the first pass requests them
          const int nq = std::min(kMaxQueries, nr - r0);
          LutQuery lq[kMaxQueries];
          const bool tables = prep && kc.lut_scores();
          for (int k = 0; tables && k < nq; ++k) {
            const int r = r0 + k, i = i0 + r / hpi, h = h0 + r % hpi;
            lq[k] = qlut_[(static_cast<size_t>(i) * n_head + h) * 2 + cls];
          }
          kc.scores_multi(Q + r0 * hd, hd, qs + (r0 * 2 + cls) * ng, 2 * ng, nq, g.k[kvh].data() + j0 * kc.row_bytes(),
                          kc.row_bytes(), nb, S_ + r0 * kBlock, kBlock, r0 == 0 ? &ahead : nullptr,
                          tables ? lq : nullptr);
        }
        // rows evicted after the first query row's position are hidden from the earlier rows
        const bool hidden = ev[nb - 1] > c0 + i0;
        for (int r = 0; r < nr; ++r) {
          const int i = i0 + r / hpi;
          float* sr = S_ + r * kBlock;
          for (int j = 0; hidden && j < nb; ++j) {
            if (ev[j] > c0 + i) sr[j] = kNegInf;
          }
          if (!softmax_block(sr, nb, m[r], l[r], acc + r * hd, hd)) std::fill(sr, sr + nb, 0.0f);
        }
        for (int r0 = 0; r0 < nr; r0 += kMaxQueries) {
          vc.accumulate_multi(S_ + r0 * kBlock, kBlock, std::min(kMaxQueries, nr - r0),
                              g.v[kvh].data() + j0 * vc.row_bytes(), vc.row_bytes(), nb, acc + r0 * hd, hd,
                              r0 == 0 ? &acc_ahead : nullptr);
        }
      }
    } else {  // fp16 tokens, per query position, read in place (its hpi rows share the block's row list)
      const auto k_at = [&](int j) { return Kp[j]; };
      const auto v_at = [&](int j) { return Vp[j]; };
      for (int i = i0; i < i1; ++i) {
        const int32_t p = c0 + i;
        const int r_begin = (i - i0) * hpi, r_end = r_begin + hpi;
        int nb = 0;
        auto flush = [&]() {
          if (hpi > 1 && hpi <= kSharedRowsMax && hd % 8 == 0) {  // the heads share each row's conversion
            bool visible[kSharedRowsMax];
            tile512::scores_rows_h(hpi, Q + r_begin * hd, hd, Kp, nb, hd, S_ + r_begin * kBlock, kBlock);
            bool all = true;
            for (int r = r_begin; r < r_end; ++r) {
              visible[r - r_begin] = softmax_block(S_ + r * kBlock, nb, m[r], l[r], acc + r * hd, hd);
              all = all && visible[r - r_begin];
            }
            if (all) {
              tile512::pv_rows_h(hpi, S_ + r_begin * kBlock, kBlock, nb, Vp, hd, acc + r_begin * hd, hd);
            } else {
              for (int r = r_begin; r < r_end; ++r) {
                if (visible[r - r_begin]) tile::pv_at(S_ + r * kBlock, nb, v_at, hd, acc + r * hd);
              }
            }
          } else {
            for (int r = r_begin; r < r_end; ++r) {
              float* sr = S_ + r * kBlock;
              tile::scores_at(Q + r * hd, k_at, nb, hd, sr);
              if (softmax_block(sr, nb, m[r], l[r], acc + r * hd, hd)) tile::pv_at(sr, nb, v_at, hd, acc + r * hd);
            }
          }
          nb = 0;
        };
        for (size_t fi = 0; fi < f16.size(); ++fi) {
          const F16Ref& f = f16[fi];
          if (f.pos > p) break;
          if (f.e <= p) continue;
          if (fi + tile::kPrefetchRows < f16.size()) {  // scattered rows: requested ahead (attend_tile.h)
            const F16Ref& a = f16[fi + tile::kPrefetchRows];
            tile::prefetch_row(a.k + static_cast<int64_t>(kvh) * hd, hd);
            tile::prefetch_row(a.v + static_cast<int64_t>(kvh) * hd, hd);
          }
          Kp[nb] = f.k + static_cast<int64_t>(kvh) * hd;
          Vp[nb] = f.v + static_cast<int64_t>(kvh) * hd;
          if (++nb == kBlock) flush();
        }
        if (nb > 0) flush();
      }
    }
    for (int r = 0; r < nr; ++r) {
      const int i = i0 + r / hpi, h = h0 + r % hpi;
      const int64_t pair = static_cast<int64_t>(i) * n_head + h;
      float* ar = acc + r * hd;
      if (n_part == 1) {
        float* o = out + pair * hd;
        const float inv = 1.0f / l[r];
        for (int d = 0; d < hd; ++d) o[d] = ar[d] * inv;
        if (opt_.rotate) wht(o, hd);
      } else {
        float* pp = partial_.data() + (pair * n_part + s) * pstride;
        pp[0] = m[r];
        pp[1] = l[r];
        std::copy(ar, ar + hd, pp + 2);
      }
    }
    if (n_part == 1 || !parts_left_.last(task / n_part)) return;
    for (int i = i0; i < i1; ++i) {  // the item's last part: its rows (query i, heads h0 .. h0 + hpi)
      const int64_t pair0 = static_cast<int64_t>(i) * n_head + h0;
      tile::merge_split_partials(partial_.data() + pair0 * n_part * pstride, hpi, n_part, hd, out + pair0 * hd);
      if (opt_.rotate) {
        for (int h = 0; h < hpi; ++h) wht(out + (pair0 + h) * hd, hd);  // back from the rotated basis
      }
    }
  });
}

}  // namespace akvq::kv
