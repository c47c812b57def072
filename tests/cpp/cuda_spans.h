// Test helper: the decode-time spans of one layer of a CPU QuantKvCache, in the CUDA kernels'
// argument form (cuda/kv_attend_args.cuh), with host pointers into copies owned here. The CPU
// emulation of the kernels (test_cuda_codec.cpp) reads them directly; the GPU tests upload them.
//
// Spans, in order: packed class 0 rows, packed class 1 rows, then the fp16 tokens (pivots and the
// window ring) in position order. Valid after a one-token append (decode): every packed row is
// visible and the snapshot is empty.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda/kv_spans.h"
#include "kv/kv_quant_cache.h"
#include "kv/quant.h"
#include "kv_attend_args.cuh"

namespace akvq::test {

using cuda::row_spec;

struct HostSpans {
  std::vector<std::vector<uint8_t>> k, v;  // per span: packed [n_head_kv][rows·row_bytes] or fp16 [rows, n_head_kv, hd]
  std::vector<std::vector<float>> kl, vl;  // per span: level tables [2^bits]
  akvq_cuda::AttendArgs args;              // spans point into the vectors above
};

// The spans of `layer` (no kivi2: its K blocks are per channel).
inline HostSpans decode_spans(const kv::QuantKvCache& c, int layer) {
  const kv::QuantKvCache::Layer& S = c.layer_state(layer);
  const int nkv = c.config().n_head_kv, hd = c.config().head_dim;
  HostSpans hs;
  hs.k.resize(3), hs.v.resize(3), hs.kl.resize(3), hs.vl.resize(3);
  for (int cls = 0; cls < 2; ++cls) {
    const kv::QuantKvCache::Segment& g = S.seg[cls];
    for (int h = 0; h < nkv; ++h) {
      hs.k[cls].insert(hs.k[cls].end(), g.k[h].begin(), g.k[h].end());
      hs.v[cls].insert(hs.v[cls].end(), g.v[h].begin(), g.v[h].end());
    }
    const kv::RowCodec &kc = c.codec_k(cls), &vc = c.codec_v(cls);
    hs.kl[cls].assign(kc.levels(), kc.levels() + (1 << kc.spec().bits));
    hs.vl[cls].assign(vc.levels(), vc.levels() + (1 << vc.spec().bits));
    akvq_cuda::AttendSpan& sp = hs.args.spans[cls];
    sp.packed = true;
    sp.n_rows = g.n();
    sp.ks = row_spec(kc);
    sp.vs = row_spec(vc);
    sp.head_stride_k = static_cast<int64_t>(g.n()) * kc.row_bytes();
    sp.head_stride_v = static_cast<int64_t>(g.n()) * vc.row_bytes();
  }
  // fp16 tokens in position order
  const size_t row = static_cast<size_t>(nkv) * hd;
  std::vector<std::pair<int32_t, std::pair<const uint16_t*, const uint16_t*>>> f16;
  for (size_t j = 0; j < S.ppos.size(); ++j) f16.push_back({S.ppos[j], {&S.pk[j * row], &S.pv[j * row]}});
  for (int j = 0; j < S.w_count; ++j) {
    const int slot = (S.w_head + j) % c.window_cap();
    f16.push_back({S.wpos[slot], {&S.wk[slot * row], &S.wv[slot * row]}});
  }
  std::sort(f16.begin(), f16.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& f : f16) {
    const auto* kb = reinterpret_cast<const uint8_t*>(f.second.first);
    const auto* vb = reinterpret_cast<const uint8_t*>(f.second.second);
    hs.k[2].insert(hs.k[2].end(), kb, kb + 2 * row);
    hs.v[2].insert(hs.v[2].end(), vb, vb + 2 * row);
  }
  akvq_cuda::AttendSpan& sp = hs.args.spans[2];
  sp.packed = false;
  sp.n_rows = static_cast<int64_t>(f16.size());
  hs.args.n_spans = 3;
  for (int s = 0; s < 3; ++s) {
    hs.args.spans[s].k = hs.k[s].data();
    hs.args.spans[s].v = hs.v[s].data();
    hs.args.spans[s].k_levels = hs.kl[s].empty() ? nullptr : hs.kl[s].data();
    hs.args.spans[s].v_levels = hs.vl[s].empty() ? nullptr : hs.vl[s].data();
  }
  hs.args.n_head_kv = nkv;
  hs.args.head_dim = hd;
  hs.args.rotate = c.options().rotate;
  return hs;
}

}  // namespace akvq::test
