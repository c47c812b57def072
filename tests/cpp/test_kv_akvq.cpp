// Quantized KV caches (q8/q4/q2/wht2/akvq2/akvq4/kivi2): attention on packed data against a
// reference computed here on the dequantized cache.
//
// Reference: every query at position p reads each token j <= p as the cache stores it once p has
// been appended: the packed row when its eviction time e <= p, else the token's fp16 copy (window,
// pivot store, or the snapshot of tokens that left fp16 during the chunk, visible for p < e).
// Every copy is reconstructed here (fp16 converted, packed rows through dequantize_row, kivi2 K
// blocks dequantized per channel and transposed) in the rotated basis, and for every (query,
// token) exactly one copy must be visible. The reference attention
// (double precision) runs in that basis with a dense rotation matrix H built here from the
// Sylvester definition (block-diagonal for non-power-of-two head_dim): out = H·softmax(q̃·K̂ᵀ)·V̂
// with q̃ = H·q; packed K rows of a codec that scores from tables (RowCodec::lut_scores) are
// scored by ref::scores_lut on the query the cache forms (q·scale, rotated by kv::wht, in float).
// Only summation order and the float online softmax differ from the cache, so the
// tolerance is 1e-5 relative to max|out| (outputs are O(1)); packed V rows of a codec that takes
// its products from bf16 pairs (RowCodec::pv_bf16) add their rounding bound, 2^-7 (p·scale and the
// level each rounded to bf16) of Σ_t p_t·|scale·L| per channel, carried through H and 1/Σp.
// Every reconstructed row must be
// close to H·(original row) (cosine >= 0.8: the stores hold the right tokens).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "core/fp16.h"
#include "cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "kv/kv_quant_cache.h"
#include "kv/quant.h"
#include "kv/wht.h"
#include "kv_attention_check.h"
#include "test_random.h"

using namespace akvq;
using kv::QuantKvCache;

namespace {

using test::randn;

// Dense normalized Hadamard (block-diagonal over the binary decomposition of d, largest first).
std::vector<double> dense_h(int d) {
  std::vector<double> H(static_cast<size_t>(d) * d, 0.0);
  int off = 0;
  for (int b = 1 << 20; b >= 1; b >>= 1) {
    if (!((d - off) & b) || off + b > d) continue;
    if (b > d - off) continue;
    const double s = 1.0 / std::sqrt(static_cast<double>(b));
    for (int i = 0; i < b; ++i) {
      for (int j = 0; j < b; ++j) H[(off + i) * d + off + j] = (__builtin_popcount(i & j) & 1) ? -s : s;
    }
    off += b;
  }
  return H;
}

struct Copy {
  int lo = 0, hi = 0;        // visible to queries at positions lo <= p < hi
  std::vector<double> k, v;  // [n_head_kv, hd] rotated basis
  // packed K rows [n_head_kv] scored from tables (RowCodec::lut_scores), else empty
  const kv::RowCodec* lut = nullptr;
  std::vector<const uint8_t*> k_rows;
  // packed V rows of a codec with RowCodec::pv_bf16: |scale·L| [n_head_kv, hd] (the offsets out), else empty
  std::vector<double> v_sl;
};

struct Deq {
  std::vector<std::vector<Copy>> at;  // [n] the copies of each position
  std::vector<double> k, v;           // [n, n_head_kv, hd] the copy a query at the last position reads
  // The copy of token t that a query at position p reads (exactly one must be visible).
  const Copy& read(int t, int p) const {
    const Copy* found = nullptr;
    int count = 0;
    for (const Copy& c : at[t]) {
      if (c.lo <= p && p < c.hi) found = &c, ++count;
    }
    EXPECT_EQ(count, 1) << "token " << t << " for the query at " << p;
    return *found;
  }
};

// Reconstructs every copy of every cached token of `layer` from the stores.
Deq dequant(const QuantKvCache& c, int layer) {
  const auto& cfg = c.config();
  const int hd = cfg.head_dim, nkv = cfg.n_head_kv;
  const int64_t row = int64_t{hd} * nkv;
  const auto& S = c.layer_state(layer);
  const int n = S.n;
  constexpr int kNever = 1 << 30;
  Deq d;
  d.at.resize(n);
  std::vector<float> tmp(std::max(hd, 32));
  auto put16 = [&](const std::vector<uint16_t>& K, const std::vector<uint16_t>& V, int slot, int pos, int hi) {
    Copy cp{pos, hi, std::vector<double>(row), std::vector<double>(row), nullptr, {}, {}};
    for (int64_t e = 0; e < row; ++e) {
      cp.k[e] = fp16_to_f32(K[slot * row + e]);
      cp.v[e] = fp16_to_f32(V[slot * row + e]);
    }
    d.at[pos].push_back(std::move(cp));
  };
  for (int w = 0; w < S.w_count; ++w) {
    const int slot = (S.w_head + w) % c.window_cap();
    put16(S.wk, S.wv, slot, S.wpos[slot], kNever);
  }
  for (size_t p = 0; p < S.xpos.size(); ++p) put16(S.xk, S.xv, static_cast<int>(p), S.xpos[p], S.xe[p]);
  for (size_t p = 0; p < S.ppos.size(); ++p) put16(S.pk, S.pv, static_cast<int>(p), S.ppos[p], kNever);
  const bool kivi = c.options().kivi;
  std::map<int, size_t> packed;  // position -> index of its packed copy in d.at[pos]
  for (int cls = 0; cls < 2; ++cls) {
    const auto& g = S.seg[cls];
    const auto& ck = c.codec_k(cls);
    const auto& cv = c.codec_v(cls);
    for (int r = 0; r < g.n(); ++r) {
      const int pos = g.pos[r];
      Copy cp{g.evict[r], kNever, std::vector<double>(row), std::vector<double>(row), nullptr, {}, {}};
      if (!kivi && ck.lut_scores()) cp.lut = &ck;
      for (int h = 0; h < nkv; ++h) {
        if (cp.lut) cp.k_rows.push_back(g.k[h].data() + r * ck.row_bytes());
        if (!kivi) {
          kv::dequantize_row(ck.spec(), g.k[h].data() + r * ck.row_bytes(), hd, tmp.data());
          for (int e = 0; e < hd; ++e) cp.k[h * hd + e] = tmp[e];
        }
        kv::dequantize_row(cv.spec(), g.v[h].data() + r * cv.row_bytes(), hd, tmp.data());
        for (int e = 0; e < hd; ++e) cp.v[h * hd + e] = tmp[e];
        if (cv.pv_bf16()) {
          cp.v_sl.resize(row);
          test::scaled_levels(cv, g.v[h].data() + r * cv.row_bytes(), tmp.data());
          for (int e = 0; e < hd; ++e) cp.v_sl[h * hd + e] = tmp[e];
        }
      }
      packed[pos] = d.at[pos].size();
      d.at[pos].push_back(std::move(cp));
    }
  }
  for (const auto& b : S.kivi) {
    const auto& ck = c.codec_k(0);
    for (int h = 0; h < nkv; ++h) {
      for (int ch = 0; ch < hd; ++ch) {
        kv::dequantize_row(ck.spec(), b.k[h].data() + ch * ck.row_bytes(), 32, tmp.data());
        for (int j = 0; j < b.n_valid; ++j) {
          Copy& cp = d.at[b.pos0 + j][packed.at(b.pos0 + j)];
          EXPECT_EQ(cp.lo, b.evict);
          cp.k[h * hd + ch] = tmp[j];
        }
      }
    }
  }
  d.k.assign(static_cast<size_t>(n) * row, 0.0);
  d.v.assign(static_cast<size_t>(n) * row, 0.0);
  for (int t = 0; t < n; ++t) {
    const Copy& cp = d.read(t, n - 1);
    std::copy(cp.k.begin(), cp.k.end(), d.k.begin() + t * row);
    std::copy(cp.v.begin(), cp.v.end(), d.v.begin() + t * row);
  }
  return d;
}

// out [n_q, n_head, hd] for the last n_q tokens, in the original basis; bound (same shape): the
// bf16 rounding bound of the rows with Copy::v_sl (0 without such rows).
std::vector<float> reference(const QuantKvCache& c, int layer, const std::vector<float>& q, int n_q, int n_head,
                             float scale, const Deq& d, std::vector<double>& bound) {
  const auto& cfg = c.config();
  const int hd = cfg.head_dim, nkv = cfg.n_head_kv, n = c.n_tokens(layer);
  const int group = n_head / nkv;
  const bool rot = c.options().rotate;
  const std::vector<double> H = dense_h(hd);
  std::vector<float> out(static_cast<size_t>(n_q) * n_head * hd);
  bound.assign(out.size(), 0.0);
  std::vector<double> qt(hd), acc(hd), sl(hd);
  for (int i = 0; i < n_q; ++i) {
    for (int h = 0; h < n_head; ++h) {
      const float* qr = q.data() + (static_cast<size_t>(i) * n_head + h) * hd;
      for (int a = 0; a < hd; ++a) {
        double t = 0;
        if (rot) {
          for (int b = 0; b < hd; ++b) t += H[a * hd + b] * qr[b];
        } else {
          t = qr[a];
        }
        qt[a] = t;
      }
      // the query as the cache scores it, for rows scored from tables: scaled, rotated in float
      std::vector<float> qf(hd);
      for (int a = 0; a < hd; ++a) qf[a] = qr[a] * scale;
      if (rot) kv::wht(qf.data(), hd);
      const int kvh = h / group, vis = n - n_q + i + 1;
      std::vector<double> s(vis);
      std::vector<const Copy*> cp(vis);
      for (int t = 0; t < vis; ++t) cp[t] = &d.read(t, vis - 1);
      // rows scored from tables: the table arithmetic (its own tests: test_kv_quant_lut.cpp), one
      // ref::scores_lut call per codec over copies of its rows
      std::map<const kv::RowCodec*, std::vector<int>> lut_rows;
      for (int t = 0; t < vis; ++t) {
        if (cp[t]->lut) lut_rows[cp[t]->lut].push_back(t);
      }
      for (const auto& [codec, ts] : lut_rows) {
        const size_t rb = codec->row_bytes();
        std::vector<uint8_t> rows(ts.size() * rb);
        for (size_t u = 0; u < ts.size(); ++u) std::memcpy(&rows[u * rb], cp[ts[u]]->k_rows[kvh], rb);
        float qsum = 0;
        codec->query_group_sums(qf.data(), &qsum);
        std::vector<float> sc(ts.size());
        kv::ref::scores_lut(codec->levels(), qf.data(), qsum, hd, rows.data(), rb, static_cast<int64_t>(ts.size()),
                            sc.data());
        for (size_t u = 0; u < ts.size(); ++u) s[ts[u]] = sc[u];
      }
      double mx = -1e300;
      for (int t = 0; t < vis; ++t) {
        if (!cp[t]->lut) {
          double dot = 0;
          for (int e = 0; e < hd; ++e) dot += qt[e] * cp[t]->k[kvh * hd + e];
          s[t] = dot * scale;
        }
        mx = std::max(mx, s[t]);
      }
      double sum = 0;
      for (double& e : s) sum += (e = std::exp(e - mx));
      std::fill(acc.begin(), acc.end(), 0.0);
      std::fill(sl.begin(), sl.end(), 0.0);
      for (int t = 0; t < vis; ++t) {
        for (int e = 0; e < hd; ++e) acc[e] += s[t] * cp[t]->v[kvh * hd + e];
        if (cp[t]->v_sl.empty()) continue;
        for (int e = 0; e < hd; ++e) sl[e] += s[t] * cp[t]->v_sl[kvh * hd + e];
      }
      const size_t o0 = (static_cast<size_t>(i) * n_head + h) * hd;
      for (int a = 0; a < hd; ++a) {
        double t = 0, b_a = 0;
        if (rot) {
          for (int b = 0; b < hd; ++b) t += H[a * hd + b] * acc[b], b_a += std::fabs(H[a * hd + b]) * sl[b];
        } else {
          t = acc[a], b_a = sl[a];
        }
        out[o0 + a] = static_cast<float>(t / sum);
        bound[o0 + a] = test::kPvBf16Bound * b_a / sum;
      }
    }
  }
  return out;
}

struct Case {
  std::string mode;
  std::map<std::string, std::string> opts;
  int head_dim = 64;
};

std::string case_name(const Case& c) {
  std::string s = c.mode;
  for (const auto& [k, v] : c.opts) s += " " + k + "=" + v;
  return s + " hd=" + std::to_string(c.head_dim);
}

std::vector<Case> all_cases() {
  const std::map<std::string, std::string> small{{"window", "16"}, {"pivots", "3"}, {"tsa_layers", "0"}};
  std::vector<Case> v{{"q8", {}},
                      {"q4", {}},
                      {"q2", {}},
                      {"wht2", {}},
                      {"akvq2", small},
                      {"akvq4", small},
                      {"kivi2", {{"window", "16"}}},
                      {"kivi2", {{"window", "0"}}}};
  auto g = small;
  g["levels"] = "gaussian";
  g["k_bits"] = "4";
  g["group"] = "32";
  v.push_back({"akvq2", g});
  v.push_back({"akvq2", small, 48});
  v.push_back({"wht2", {{"window", "5"}, {"bits", "3"}}, 40});
  return v;
}

// A 2-layer cache of 2 KV heads, 4096 tokens, for the case.
std::unique_ptr<kv::KvCache> make_cache(const Case& cs) {
  kv::KvConfig cfg;
  cfg.mode = cs.mode;
  cfg.n_layer = 2;
  cfg.n_head_kv = 2;
  cfg.head_dim = cs.head_dim;
  cfg.n_ctx = 4096;
  cfg.options = cs.opts;
  return kv::KvCache::create(cfg);
}

// Feeds n_total tokens in chunks of `chunk` into a 2-layer cache (layer 0 TSA for akvq),
// with kinds cycling text/vision/generated and massive activations at a few positions, and
// compares every attention (a sample of them for chunk 1) with the reference.
void run_case(const Case& cs, int chunk, int n_total, int threads) {
  SCOPED_TRACE(case_name(cs) + " chunk=" + std::to_string(chunk));
  auto cache = make_cache(cs);
  auto* qc = dynamic_cast<QuantKvCache*>(cache.get());
  ASSERT_NE(qc, nullptr);
  cpu::ThreadPool pool(threads);
  const int hd = cs.head_dim, n_head = 6, E = 32;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  uint32_t seed = 1;
  for (int p0 = 0; p0 < n_total; p0 += chunk) {
    const int n = std::min(chunk, n_total - p0);
    std::vector<TokenKind> kinds(n);
    for (int i = 0; i < n; ++i) kinds[i] = static_cast<TokenKind>(((p0 + i) / 23) % 3);
    cache->set_kinds(kinds.data(), n);
    const bool check = chunk > 1 || p0 % 37 == 0 || p0 + n >= n_total || p0 < 3;
    for (int l = 0; l < 2; ++l) {
      std::vector<float> x = randn(static_cast<size_t>(n) * E, seed++);
      for (int i = 0; i < n; ++i) {
        if ((p0 + i) % 41 == 3) x[i * E + 5] = 300.0f + (p0 + i);  // massive activation
      }
      cache->observe(l, x.data(), n, E);
      std::vector<float> k = randn(static_cast<size_t>(n) * 2 * hd, seed++);
      std::vector<float> v = randn(static_cast<size_t>(n) * 2 * hd, seed++);
      for (size_t e = 0; e < k.size(); e += 7) k[e] *= 4.0f;  // outlier channels
      cache->append(l, k.data(), v.data(), n);
      std::vector<float> q = randn(static_cast<size_t>(n) * n_head * hd, seed++, 1.5f);
      std::vector<float> out(q.size());
      cache->attend(l, q.data(), n, n_head, scale, out.data(), pool);
      if (!check) continue;
      const Deq d = dequant(*qc, l);
      std::vector<double> bound;
      const auto ref = reference(*qc, l, q, n, n_head, scale, d, bound);
      double mx = 0, excess = -1e300;  // excess: the largest error beyond its bf16 bound
      size_t worst = 0;
      for (size_t e = 0; e < ref.size(); ++e) mx = std::max(mx, std::fabs(double(ref[e])));
      for (size_t e = 0; e < ref.size(); ++e) {
        const double x = std::fabs(double(ref[e]) - out[e]) - bound[e];
        if (x > excess) excess = x, worst = e;
      }
      // f32 sums over the cached tokens: a rounding bound linear in their count (1e-5 holds to
      // 512 tokens; past kPartRows a wht2 3-bit case read 1.1e-5 at 740)
      const double tol = 1e-5 * std::max(1.0, mx) * std::max(1.0, (p0 + n) / 512.0);
      ASSERT_LE(excess, tol)
          << "layer " << l << " at " << p0 << ": element " << worst << " ref " << ref[worst] << " got " << out[worst]
          << " bf16 bound " << bound[worst];
    }
  }
}

}  // namespace

TEST(KvAkvq, AttentionMatchesDequantizedReference) {
  for (const Case& cs : all_cases()) {
    for (int chunk : {1, 7, 64}) run_case(cs, chunk, chunk == 1 ? 150 : 300, 3);
  }
}

TEST(KvAkvq, AttentionLongDecode) {  // long context, one query, several threads
  for (const Case& cs : all_cases()) run_case(cs, 1, 420, 4);
}

// Past kPartRows packed rows the attention is split into parts whose partials are merged (by the
// task that finishes an item's last part): prefill chunks and decode steps there against the
// dequantized reference.
TEST(KvAkvq, AttentionAcrossPartsMatchesDequantizedReference) {
  static_assert(QuantKvCache::kPartRows < 1100);
  for (const Case& cs : all_cases()) {
    run_case(cs, 550, 1100, 3);
    run_case(cs, 1, 1100, 2);
  }
}

// Stored rows are the right tokens: reconstructed ≈ H·(original) (cosine >= 0.8 even at 2 bits).
TEST(KvAkvq, StoresHoldTheirTokens) {
  for (const std::string mode : {"q2", "wht2", "akvq2", "kivi2"}) {
    SCOPED_TRACE(mode);
    kv::KvConfig cfg;
    cfg.mode = mode;
    cfg.n_layer = 1, cfg.n_head_kv = 1, cfg.head_dim = 64, cfg.n_ctx = 256;
    cfg.options = {{"window", "8"}};
    auto cache = kv::KvCache::create(cfg);
    auto* qc = dynamic_cast<QuantKvCache*>(cache.get());
    const int n = 100;
    const auto k = randn(n * 64, 7), v = randn(n * 64, 8);
    cache->append(0, k.data(), v.data(), n);
    const auto nx = randn(64, 9);
    cache->append(0, nx.data(), nx.data(), 1);
    const Deq d = dequant(*qc, 0);
    const auto H = dense_h(64);
    for (int t = 0; t < n; ++t) {
      for (int which = 0; which < 2; ++which) {
        const auto& src = which ? v : k;
        const auto& got = which ? d.v : d.k;
        double dot = 0, n1 = 0, n2 = 0;
        for (int a = 0; a < 64; ++a) {
          double hx = 0;
          if (qc->options().rotate) {
            for (int b = 0; b < 64; ++b) hx += H[a * 64 + b] * src[t * 64 + b];
          } else {
            hx = src[t * 64 + a];
          }
          dot += hx * got[t * 64 + a], n1 += hx * hx, n2 += got[t * 64 + a] * got[t * 64 + a];
        }
        EXPECT_GE(dot / std::sqrt(n1 * n2), 0.8) << "token " << t << (which ? " V" : " K");
      }
    }
  }
}

namespace {

// Attention outputs [n_total, 2 layers, n_head, hd] for a token stream fed in chunks of `chunk`;
// every position's inputs (layer input, K, V, query) depend on the position alone.
std::vector<float> stream_outputs(const Case& cs, int chunk, int n_total, int threads) {
  auto cache = make_cache(cs);
  cpu::ThreadPool pool(threads);
  const int hd = cs.head_dim, n_head = 6, E = 32;
  const size_t per = static_cast<size_t>(n_head) * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> all(static_cast<size_t>(n_total) * 2 * per);
  for (int p0 = 0; p0 < n_total; p0 += chunk) {
    const int n = std::min(chunk, n_total - p0);
    std::vector<TokenKind> kinds(n);
    for (int i = 0; i < n; ++i) kinds[i] = static_cast<TokenKind>(((p0 + i) / 23) % 3);
    cache->set_kinds(kinds.data(), n);
    for (int l = 0; l < 2; ++l) {
      std::vector<float> x, k, v, q;
      for (int i = 0; i < n; ++i) {
        const uint32_t sd = static_cast<uint32_t>((p0 + i) * 8 + l * 4);
        auto xi = randn(E, sd);
        if ((p0 + i) % 41 == 3) xi[5] = 300.0f + (p0 + i);      // massive activations: pivots,
        if ((p0 + i) % 13 == 5) xi[7] = 200.0f + 3 * (p0 + i);  // enough to displace some
        auto ki = randn(2 * hd, sd + 1), vi = randn(2 * hd, sd + 2), qi = randn(per, sd + 3, 1.5f);
        x.insert(x.end(), xi.begin(), xi.end());
        k.insert(k.end(), ki.begin(), ki.end());
        v.insert(v.end(), vi.begin(), vi.end());
        q.insert(q.end(), qi.begin(), qi.end());
      }
      cache->observe(l, x.data(), n, E);
      cache->append(l, k.data(), v.data(), n);
      std::vector<float> out(q.size());
      cache->attend(l, q.data(), n, n_head, scale, out.data(), pool);
      for (int i = 0; i < n; ++i) {
        std::copy(out.begin() + i * per, out.begin() + (i + 1) * per, all.begin() + ((p0 + i) * 2 + l) * per);
      }
    }
  }
  return all;
}

}  // namespace

// One semantics: a query's attention output is bit for bit the same whatever the chunking of the
// stream (decode one token at a time, or prefill in chunks of 7 / 64 / 200) and the thread count.
TEST(KvAkvq, AttentionIsBatchInvariant) {
  for (const Case& cs : all_cases()) {
    SCOPED_TRACE(case_name(cs));
    const int n_total = 260;
    const auto ref = stream_outputs(cs, 1, n_total, 2);
    for (const auto& [chunk, threads] : std::vector<std::pair<int, int>>{{7, 2}, {64, 3}, {200, 1}, {1, 4}}) {
      const auto got = stream_outputs(cs, chunk, n_total, threads);
      size_t first = got.size();
      for (size_t e = 0; e < got.size() && first == got.size(); ++e) {
        if (std::memcmp(&got[e], &ref[e], sizeof(float)) != 0) first = e;
      }
      EXPECT_EQ(first, got.size()) << "chunk " << chunk << " threads " << threads << ": first differing value at "
                                   << first;
    }
  }
}

// Long streams: the packed rows span several parts (split-K ranges of kPartRows rows merged in a
// fixed order); still bit for bit the same for decode, prefill chunks and thread counts.
TEST(KvAkvq, AttentionIsBatchInvariantAcrossParts) {
  const std::map<std::string, std::string> small{{"window", "16"}, {"pivots", "3"}, {"tsa_layers", "0"}};
  for (const Case& cs : std::vector<Case>{{"q2", {}}, {"akvq2", small}, {"kivi2", {{"window", "16"}}}}) {
    SCOPED_TRACE(case_name(cs));
    const int n_total = 1100;  // two parts of the longest segment
    const auto ref = stream_outputs(cs, 1, n_total, 2);
    for (const auto& [chunk, threads] : std::vector<std::pair<int, int>>{{512, 2}, {97, 3}}) {
      const auto got = stream_outputs(cs, chunk, n_total, threads);
      EXPECT_EQ(0, std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)))
          << "chunk " << chunk << " threads " << threads;
    }
  }
}
