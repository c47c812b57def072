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
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/kv_spans.h"
#include "kv/kv_cache.h"
#include "kv/kv_quant_cache.h"
#include "kv/quant.h"
#include "kv_attend_args.cuh"
#include "test_random.h"

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

// A decode-time case of the flash-decoding tests (CPU emulation and GPU alike).
struct DecodeCase {
  std::string mode;
  std::map<std::string, std::string> opts;
  int head_dim, n_head, n_head_kv, n_tokens;
  int64_t rows_per_split;  // 0: the kernels' default
};

inline std::vector<DecodeCase> decode_cases() {
  return {
      {"akvq2", {{"window", "16"}, {"pivots", "4"}, {"tsa_layers", "0"}}, 64, 6, 2, 700, 128},
      {"akvq2", {}, 128, 8, 1, 3000, 0},
      {"akvq4", {{"window", "8"}}, 80, 4, 4, 300, 128},
      {"q2", {}, 64, 16, 2, 333, 256},
      {"wht2", {}, 96, 3, 1, 260, 128},
      {"q8", {}, 64, 2, 2, 150, 0},
      {"akvq2", {{"levels", "uniform"}, {"group", "32"}}, 128, 32, 4, 5000, 0},
      {"wht2", {{"bits", "3"}}, 256, 16, 2, 600, 0},  // 8 heads per block at the shared-memory edge
  };
}

// A 2-layer cache of the case holding n_tokens tokens: prefill chunks of 256 (kinds cycling
// text / vision / generated, growing spikes in the layer input: pivots, outlier K channels), then
// a one-token append, so that a decode query sees every stored row. The GPU kernels score packed K
// rows and accumulate packed V rows with exact fp32 products, so the CPU cache they are compared
// with does too (`lut=0`, `pv_bf16=0`).
inline std::unique_ptr<kv::KvCache> decode_cache(const DecodeCase& cs, uint32_t& seed) {
  kv::KvConfig cfg;
  cfg.mode = cs.mode, cfg.n_layer = 2, cfg.n_head_kv = cs.n_head_kv, cfg.head_dim = cs.head_dim;
  cfg.n_ctx = 8192, cfg.options = cs.opts;
  if (cs.mode != "kivi2") cfg.options.emplace("lut", "0"), cfg.options.emplace("pv_bf16", "0");
  std::unique_ptr<kv::KvCache> cache = kv::KvCache::create(cfg);
  const int E = 16;
  const size_t row = static_cast<size_t>(cs.n_head_kv) * cs.head_dim;
  auto feed = [&](int n) {
    std::vector<TokenKind> kinds(n);
    for (int i = 0; i < n; ++i) kinds[i] = static_cast<TokenKind>((cache->n_tokens() + i) / 29 % 3);
    cache->set_kinds(kinds.data(), n);
    for (int l = 0; l < 2; ++l) {
      std::vector<float> x = randn(static_cast<size_t>(n) * E, seed++);
      for (int i = 0; i < n; ++i) {
        const int p = cache->n_tokens(l) + i;
        if (p % 53 == 5) x[i * E + 3] = 500.0f + p;
      }
      cache->observe(l, x.data(), n, E);
      std::vector<float> k = randn(n * row, seed++), v = randn(n * row, seed++);
      for (size_t e = 0; e < k.size(); e += 5) k[e] *= 4.0f;
      cache->append(l, k.data(), v.data(), n);
    }
  };
  for (int done = 0; done < cs.n_tokens - 1; done += 256) feed(std::min(256, cs.n_tokens - 1 - done));
  feed(1);
  return cache;
}

}  // namespace akvq::test
