// Non-causal multi-head attention of the vision transformer (ops.h: attention).
//
// A work item is (sequence, head, range of queries): the whole sequence unless that leaves too few
// items for the threads. It copies the head's keys transposed into Kt [head_dim, L16] (L16 =
// seq_len rounded up to 16, zero padded) and its values into Vh [seq_len, head_dim] (contiguous
// rows: the strided rows of the [L, n_head * head_dim] input share cache sets), then for groups of
// up to kQGroup queries:
//   S[i, j]  = Σ_d (scale q[i, d]) Kt[d, j]        (d in order: the same sum for any grouping)
//   P[i, j]  = exp(S[i, j] - max_j S[i, j]),  l_i = Σ_j P[i, j]
//   out[i]   = (Σ_j P[i, j] v[j]) / l_i
// A row's arithmetic depends only on seq_len and head_dim, never on the other sequences or on
// how the queries are grouped into items, so results are batch-invariant.
#include <akvq/error.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "ops/vec.h"

namespace akvq::ops {

namespace {

using vec::load16;
using vec::load8;
using vec::splat16;
using vec::splat8;
using vec::store16;
using vec::store8;
using vec::v16;
using vec::v8;

constexpr int kMinQueries = 16;  // queries per work item at least (the key transpose is shared)
#if defined(__AVX512F__)
constexpr int kQGroup = 6;  // queries sharing each key / value load: 6 x 4 accumulators + 4 + 1 of 32 zmm
#else
constexpr int kQGroup = 4;  // (v16 is two ymm or four NEON registers: fewer accumulators)
#endif

// S[g, j0 : j0 + 16 NJ] for the NQ queries Q[g, hd] against Kt[hd, ldk] columns j0 .. j0 + 16 NJ - 1
// (NQ x NJ independent accumulators, enough to hide the FMA latency when both are 4).
template <int NQ, int NJ>
void scores16(const float* Q, int hd, const float* Kt, int ldk, int j0, float* S, int lds) {
  v16 a[NQ][NJ];
  for (int g = 0; g < NQ; ++g) {
    for (int c = 0; c < NJ; ++c) a[g][c] = splat16(0.0f);
  }
  for (int d = 0; d < hd; ++d) {
    v16 k[NJ];
    for (int c = 0; c < NJ; ++c) k[c] = load16(Kt + static_cast<int64_t>(d) * ldk + j0 + 16 * c);
    for (int g = 0; g < NQ; ++g) {
      const v16 qv = splat16(Q[g * hd + d]);
      for (int c = 0; c < NJ; ++c) a[g][c] += qv * k[c];
    }
  }
  for (int g = 0; g < NQ; ++g) {
    for (int c = 0; c < NJ; ++c) store16(S + g * lds + j0 + 16 * c, a[g][c]);
  }
}

// Vector widths for pv_chunk: 16 floats (one AVX-512 register where the build has it) and 8.
struct W16 {
  using V = v16;
  static constexpr int kW = 16;
  static V load(const float* p) { return load16(p); }
  static void store(float* p, const V& v) { store16(p, v); }
  static V splat(float x) { return splat16(x); }
};
struct W8 {
  using V = v8;
  static constexpr int kW = 8;
  static V load(const float* p) { return load8(p); }
  static void store(float* p, const V& v) { store8(p, v); }
  static V splat(float x) { return splat8(x); }
};

// acc[g, d0 : d0 + W NV] = Σ_{j < n} P[g, j] V[j, d0 : d0 + W NV] for NQ queries.
template <class W, int NQ, int NV>
void pv_chunk(const float* P, int ldp, int n, const float* V, int64_t ldv, int d0, float* acc, int hd) {
  typename W::V a[NQ][NV];
  for (int g = 0; g < NQ; ++g) {
    for (int c = 0; c < NV; ++c) a[g][c] = W::splat(0.0f);
  }
  for (int j = 0; j < n; ++j) {
    const float* vj = V + j * ldv + d0;
    typename W::V vv[NV];
    for (int c = 0; c < NV; ++c) vv[c] = W::load(vj + W::kW * c);
    for (int g = 0; g < NQ; ++g) {
      const typename W::V p = W::splat(P[g * ldp + j]);
      for (int c = 0; c < NV; ++c) a[g][c] += p * vv[c];
    }
  }
  for (int g = 0; g < NQ; ++g) {
    for (int c = 0; c < NV; ++c) W::store(acc + g * hd + d0 + W::kW * c, a[g][c]);
  }
}

template <int NQ>
void pv(const float* P, int ldp, int n, const float* V, int64_t ldv, int hd, float* acc) {
  int d = 0;
  for (; d + 64 <= hd; d += 64) pv_chunk<W16, NQ, 4>(P, ldp, n, V, ldv, d, acc, hd);
  for (; d + 16 <= hd; d += 16) pv_chunk<W16, NQ, 1>(P, ldp, n, V, ldv, d, acc, hd);
  for (; d + 8 <= hd; d += 8) pv_chunk<W8, NQ, 1>(P, ldp, n, V, ldv, d, acc, hd);
  for (; d < hd; ++d) {
    for (int g = 0; g < NQ; ++g) {
      float s = 0.0f;
      for (int j = 0; j < n; ++j) s += P[g * ldp + j] * V[j * ldv + d];
      acc[g * hd + d] = s;
    }
  }
}

// Scores, softmax and P·V for NQ queries; acc[g, hd] = Σ_j P[g, j] v[j], inv_l[g] = 1 / Σ_j P[g, j].
template <int NQ>
void group(const float* Q, int hd, const float* Kt, int L, int L16, float* S, const float* V, int64_t ldv, float* acc,
           float* inv_l) {
  int j0 = 0;
  for (; j0 + 64 <= L16; j0 += 64) scores16<NQ, 4>(Q, hd, Kt, L16, j0, S, L16);
  for (; j0 < L16; j0 += 16) scores16<NQ, 1>(Q, hd, Kt, L16, j0, S, L16);
  // softmax over the L real columns, 16 at a time: in the last block the padding columns are
  // -inf for the max and 0 after the exp
  const v16 lane = v16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const v16 keep = lane < static_cast<float>(L - (L16 - 16)) ? splat16(1.0f) : splat16(0.0f);
  for (int g = 0; g < NQ; ++g) {
    float* s = S + g * L16;
    float* last = s + L16 - 16;
    store16(last, keep > 0.0f ? load16(last) : splat16(-INFINITY));
    v16 m = load16(s);
    for (int j = 16; j < L16; j += 16) {
      const v16 x = load16(s + j);
      m = x > m ? x : m;
    }
    float mx = m[0];
    for (int i = 1; i < 16; ++i) mx = m[i] > mx ? m[i] : mx;
    v16 a = splat16(0.0f);
    for (int j = 0; j < L16; j += 16) {
      v16 e = vec::exp_clamped16(load16(s + j) - mx);
      if (j == L16 - 16) e *= keep;
      store16(s + j, e);
      a += e;
    }
    float l = 0.0f;
    for (int i = 0; i < 16; ++i) l += a[i];
    inv_l[g] = 1.0f / l;
  }
  pv<NQ>(S, L16, L, V, ldv, hd, acc);
}

}  // namespace

void attention(const float* q, const float* k, const float* v, int n_seq, int seq_len, int n_head, int head_dim,
               float scale, float* out, cpu::ThreadPool& pool) {
  if (n_seq < 0 || seq_len < 0 || n_head < 1 || head_dim < 1) {
    throw InvalidArgument("[ops] attention: bad sizes (n_seq " + std::to_string(n_seq) + ", seq_len " +
                          std::to_string(seq_len) + ", n_head " + std::to_string(n_head) + ", head_dim " +
                          std::to_string(head_dim) + ")");
  }
  if (n_seq == 0 || seq_len == 0) return;
  if (!q || !k || !v || !out) throw InvalidArgument("[ops] attention: null data pointer");
  const int L = seq_len, hd = head_dim;
  const int L16 = (L + 15) / 16 * 16;  // key columns, zero padded
  const int64_t E = static_cast<int64_t>(n_head) * hd;
  const int nth = pool.size();
  // query ranges per (sequence, head): enough items for the threads, each range >= kMinQueries
  const int want = std::max(1, (4 * nth + n_seq * n_head - 1) / (n_seq * n_head));
  const int n_qblk = std::max(1, std::min(want, L / kMinQueries));
  const int n_items = n_seq * n_head * n_qblk;
  // per item: Kt [hd, L16], Vh [L, hd], Q [kQGroup, hd], S [kQGroup, L16], acc [kQGroup, hd]
  const size_t per_thread =
      static_cast<size_t>(hd) * L16 + static_cast<size_t>(L) * hd + kQGroup * (2 * static_cast<size_t>(hd) + L16);
  // kept across calls (no page faults per layer); the workers reach the caller's copy through
  // the reference (a thread_local named inside the lambda would be each worker's own)
  thread_local std::vector<std::vector<float>> scratch;
  std::vector<std::vector<float>>& bufs = scratch;
  if (bufs.size() < static_cast<size_t>(nth)) bufs.resize(static_cast<size_t>(nth));
  for (auto& b : bufs) {
    if (b.size() < per_thread) b.resize(per_thread);
  }

  pool.run(n_items, [&](int item, int thread) {
    const int blk = item % n_qblk;
    const int h = (item / n_qblk) % n_head;
    const int s = item / n_qblk / n_head;
    float* Kt = bufs[thread].data();
    float* Vh = Kt + static_cast<size_t>(hd) * L16;
    float* Q = Vh + static_cast<size_t>(L) * hd;
    float* S = Q + kQGroup * hd;
    float* acc = S + kQGroup * L16;
    const int64_t r0 = static_cast<int64_t>(s) * L;
    const float* kh = k + r0 * E + static_cast<int64_t>(h) * hd;
    const float* vh = v + r0 * E + static_cast<int64_t>(h) * hd;
    for (int j = 0; j < L; ++j) std::copy(vh + j * E, vh + j * E + hd, Vh + static_cast<int64_t>(j) * hd);
    // keys of this head, transposed 8 keys at a time (contiguous writes), zero padded to L16
    for (int j0 = 0; j0 < L16; j0 += 8) {
      const int nj = std::max(0, std::min(8, L - j0));
      for (int d = 0; d < hd; ++d) {
        float* dst = Kt + static_cast<int64_t>(d) * L16 + j0;
        for (int j = 0; j < nj; ++j) dst[j] = kh[(j0 + j) * E + d];
        for (int j = nj; j < 8; ++j) dst[j] = 0.0f;
      }
    }

    const int i0 = static_cast<int>(int64_t{L} * blk / n_qblk), i1 = static_cast<int>(int64_t{L} * (blk + 1) / n_qblk);
    for (int ig = i0; ig < i1; ig += kQGroup) {
      const int nq = std::min(kQGroup, i1 - ig);
      for (int g = 0; g < nq; ++g) {
        const float* qi = q + (r0 + ig + g) * E + static_cast<int64_t>(h) * hd;
        for (int d = 0; d < hd; ++d) Q[g * hd + d] = qi[d] * scale;
      }
      float inv_l[kQGroup];
      switch (nq) {
#if defined(__AVX512F__)
        case 6: group<6>(Q, hd, Kt, L, L16, S, Vh, hd, acc, inv_l); break;
        case 5: group<5>(Q, hd, Kt, L, L16, S, Vh, hd, acc, inv_l); break;
#endif
        case 4: group<4>(Q, hd, Kt, L, L16, S, Vh, hd, acc, inv_l); break;
        case 3: group<3>(Q, hd, Kt, L, L16, S, Vh, hd, acc, inv_l); break;
        case 2: group<2>(Q, hd, Kt, L, L16, S, Vh, hd, acc, inv_l); break;
        default: group<1>(Q, hd, Kt, L, L16, S, Vh, hd, acc, inv_l); break;
      }
      for (int g = 0; g < nq; ++g) {
        const float inv = inv_l[g];
        float* o = out + (r0 + ig + g) * E + static_cast<int64_t>(h) * hd;
        for (int d = 0; d < hd; ++d) o[d] = acc[g * hd + d] * inv;
      }
    }
  });
}

}  // namespace akvq::ops
