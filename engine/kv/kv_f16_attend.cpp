// Causal attention over the f16 cache with a block-wise online softmax.
//
// Work items are (query token, query head, split) triples. Scores for a block of cached tokens
// are computed first (ops::dot_f16), then the running max / sum / accumulator are rescaled once
// per block and the block's V rows are accumulated (ops::axpy_f16). When there are few
// (query, head) pairs for the threads (decode), each sequence is also split into ranges whose
// partial results (max, sum, unnormalised accumulator) are merged afterwards (split-K).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "akvq/error.h"
#include "kv/kv_f16.h"
#include "ops/ops.h"

namespace akvq::kv {

namespace {

constexpr int kBlock = 64;  // scores computed before each rescale of the accumulator

struct Partial {
  float m = -std::numeric_limits<float>::infinity();  // running max of scores
  float sum = 0.0f;                                    // Σ exp(score - m)
};

// Attends q [head_dim] over tokens [t0, t1) of k, v (rows of `stride` values, this head's
// columns already offset). acc [head_dim] receives Σ exp(s - m) v (unnormalised).
Partial attend_range(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride, int t0,
                     int t1, int head_dim, float scale, float* acc) {
  Partial p;
  std::fill(acc, acc + head_dim, 0.0f);
  float sc[kBlock];
  for (int b = t0; b < t1; b += kBlock) {
    const int nb = std::min(kBlock, t1 - b);
    float bmax = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < nb; ++j) {
      sc[j] = ops::dot_f16(q, k + (b + j) * stride, head_dim) * scale;
      bmax = std::max(bmax, sc[j]);
    }
    if (bmax > p.m) {
      const float f = std::exp(p.m - bmax);  // 0 on the first block
      if (p.sum > 0.0f) {
        for (int d = 0; d < head_dim; ++d) acc[d] *= f;
      }
      p.sum *= f;
      p.m = bmax;
    }
    for (int j = 0; j < nb; ++j) {
      const float e = std::exp(sc[j] - p.m);
      p.sum += e;
      ops::axpy_f16(e, v + (b + j) * stride, acc, head_dim);
    }
  }
  return p;
}

// Query order that pairs short and long causal rows (0, n-1, 1, n-2, ...) so that contiguous or
// round-robin task chunks get similar amounts of work.
inline int zigzag(int k, int n) { return (k & 1) ? n - 1 - k / 2 : k / 2; }

}  // namespace

void F16KvCache::attend(int layer, const float* q, int n_q, int n_head, float scale, float* out,
                        cpu::ThreadPool& pool) const {
  check_layer(layer, "attend");
  const int n_kv = n_[layer];
  const int head_dim = cfg_.head_dim;
  if (n_q < 1 || n_q > n_kv) {
    throw InvalidArgument("[kv] attend: n_q = " + std::to_string(n_q) + " but layer " +
                          std::to_string(layer) + " holds " + std::to_string(n_kv) + " tokens");
  }
  if (n_head < cfg_.n_head_kv || n_head % cfg_.n_head_kv != 0) {
    throw InvalidArgument("[kv] attend: n_head = " + std::to_string(n_head) +
                          " is not a multiple of n_head_kv = " + std::to_string(cfg_.n_head_kv));
  }
  const int group = n_head / cfg_.n_head_kv;
  const uint16_t* kbase = k_[layer].data();
  const uint16_t* vbase = v_[layer].data();

  // split-K: only when (query, head) pairs alone cannot keep the threads evenly busy
  const int pairs = n_q * n_head;
  const int nth = pool.size();
  int n_split = 1;
  if (nth > 1 && pairs < 8 * nth && n_kv >= 2 * kMinSplit) {
    n_split = std::min((8 * nth + pairs - 1) / pairs, n_kv / kMinSplit);
  }
  const int chunk = (n_kv + n_split - 1) / n_split;  // tokens per split
  const int64_t pstride = 2 + head_dim;               // Partial + accumulator
  if (n_split > 1) partial_.resize(static_cast<size_t>(pairs) * n_split * pstride);

  pool.run(pairs * n_split, [&](int task, int /*thread*/) {
    const int s = task % n_split;
    const int h = (task / n_split) % n_head;
    const int i = zigzag(task / n_split / n_head, n_q);
    const int visible = n_kv - n_q + i + 1;  // causal: tokens [0, visible)
    const int t0 = std::min(s * chunk, visible);
    const int t1 = std::min(t0 + chunk, visible);
    const int kvh = h / group;
    const float* qrow = q + (static_cast<int64_t>(i) * n_head + h) * head_dim;
    const uint16_t* kh = kbase + static_cast<int64_t>(kvh) * head_dim;
    const uint16_t* vh = vbase + static_cast<int64_t>(kvh) * head_dim;
    float* orow = out + (static_cast<int64_t>(i) * n_head + h) * head_dim;
    if (n_split == 1) {
      const Partial p = attend_range(qrow, kh, vh, row_, t0, t1, head_dim, scale, orow);
      const float inv = 1.0f / p.sum;
      for (int d = 0; d < head_dim; ++d) orow[d] *= inv;
      return;
    }
    float* pp = partial_.data() + ((static_cast<int64_t>(i) * n_head + h) * n_split + s) * pstride;
    const Partial p = attend_range(qrow, kh, vh, row_, t0, t1, head_dim, scale, pp + 2);
    pp[0] = p.m;
    pp[1] = p.sum;
  });
  if (n_split == 1) return;

  // merge: out = Σ_s exp(m_s - M) acc_s / Σ_s exp(m_s - M) sum_s
  for (int64_t r = 0; r < pairs; ++r) {
    const float* pr = partial_.data() + r * n_split * pstride;
    float M = -std::numeric_limits<float>::infinity();
    for (int s = 0; s < n_split; ++s) M = std::max(M, pr[s * pstride]);
    float* orow = out + r * head_dim;
    std::fill(orow, orow + head_dim, 0.0f);
    float total = 0.0f;
    for (int s = 0; s < n_split; ++s) {
      const float* ps = pr + s * pstride;
      if (ps[1] == 0.0f) continue;  // empty range (beyond the causal limit)
      const float w = std::exp(ps[0] - M);
      total += w * ps[1];
      for (int d = 0; d < head_dim; ++d) orow[d] += w * ps[2 + d];
    }
    const float inv = 1.0f / total;
    for (int d = 0; d < head_dim; ++d) orow[d] *= inv;
  }
}

}  // namespace akvq::kv
