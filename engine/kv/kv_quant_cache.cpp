// Quantized KV cache storage: append (window ring, eviction into precision classes, pivots,
// kivi2 K blocks), truncate, accounting. Attention lives in kv_quant_attend.cpp.
#include "kv/kv_quant_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "akvq/error.h"
#include "kv/attend_tile.h"
#include "kv/wht.h"
#include "ops/ops.h"

namespace akvq::kv {

namespace {
constexpr int kBlk = defaults::kKiviBlock;

std::string class_name(const QuantSpec& k, const QuantSpec& v) {
  std::string s =
      k.bits == v.bits ? "q" + std::to_string(k.bits) : "k" + std::to_string(k.bits) + "v" + std::to_string(v.bits);
  if (k.levels == Levels::Gaussian) s += "g";
  return s;
}

template <class T>
void compact(std::vector<T>& data, const std::vector<char>& keep, size_t unit) {
  size_t w = 0;
  for (size_t r = 0; r < keep.size(); ++r) {
    if (!keep[r]) continue;
    if (w != r) std::memmove(&data[w * unit], &data[r * unit], unit * sizeof(T));
    ++w;
  }
  data.resize(w * unit);
}
}  // namespace

QuantKvCache::QuantKvCache(const KvConfig& cfg, KvOptions opt)
    : KvCache(cfg),
      opt_(std::move(opt)),
      row_(static_cast<int64_t>(cfg.n_head_kv) * cfg.head_dim),
      cap_w_(opt_.kivi ? opt_.window + kBlk : opt_.window),
      tsa_(cfg.n_layer, 0),
      L_(cfg.n_layer) {
  for (int l : opt_.tsa_layers) tsa_[l] = 1;
  const int hd = cfg.head_dim;
  ck_.emplace_back(opt_.k_low, opt_.kivi ? kBlk : hd);
  cv_.emplace_back(opt_.v_low, hd);
  ck_.emplace_back(opt_.k_tsa, hd);
  cv_.emplace_back(opt_.v_tsa, hd);
  for (Layer& S : L_) {
    for (Segment& g : S.seg) g.k.resize(cfg.n_head_kv), g.v.resize(cfg.n_head_kv);
  }
}

void QuantKvCache::check_layer(int layer, const char* what) const {
  if (layer < 0 || layer >= cfg_.n_layer) {
    throw InvalidArgument(std::string("[kv] ") + what + ": layer " + std::to_string(layer) + " out of range [0, " +
                          std::to_string(cfg_.n_layer) + ")");
  }
}

int QuantKvCache::n_tokens(int layer) const {
  check_layer(layer, "n_tokens");
  return L_[layer].n;
}

void QuantKvCache::clear() {
  for (Layer& S : L_) {
    Layer fresh;
    for (Segment& g : fresh.seg) g.k.resize(cfg_.n_head_kv), g.v.resize(cfg_.n_head_kv);
    S = std::move(fresh);
  }
  kinds_.clear();
  ckpt_ = Checkpoint();
}

void QuantKvCache::set_kinds(const TokenKind* kinds, int n) {
  if (n < 0 || (n > 0 && !kinds)) throw InvalidArgument("[kv] set_kinds: bad kinds array");
  const size_t base = static_cast<size_t>(L_[0].n);
  if (kinds_.size() < base + n) kinds_.resize(base + n, 0);
  for (int i = 0; i < n; ++i) kinds_[base + i] = static_cast<uint8_t>(kinds[i]);
}

void QuantKvCache::observe(int layer, const float* x, int n, int n_embd) {
  check_layer(layer, "observe");
  if (opt_.pivots == 0 || n <= 0) return;
  std::vector<float> amax(n);
  for (int i = 0; i < n; ++i) {
    const float* xi = x + static_cast<int64_t>(i) * n_embd;
    float m = 0.0f;
    for (int j = 0; j < n_embd; ++j) m = std::max(m, std::fabs(xi[j]));
    amax[i] = m;
  }
  observe_amax(layer, amax.data(), n);
}

void QuantKvCache::observe_amax(int layer, const float* amax, int n) {
  check_layer(layer, "observe");
  if (opt_.pivots == 0 || n <= 0) return;
  Layer& S = L_[layer];
  const size_t p0 = static_cast<size_t>(S.n);
  if (S.amax.size() < p0 + n) S.amax.resize(p0 + n, 0.0f);
  std::copy(amax, amax + n, S.amax.begin() + static_cast<int64_t>(p0));
}

// Running median of the observed per-token max|x|: the element at sorted index size / 2 (the
// upper median), kept as a max-heap of the lower half and a min-heap of the rest.
void QuantKvCache::median_push(Layer& S, int32_t pos) {
  if (opt_.pivots == 0 || static_cast<size_t>(pos) >= S.amax.size() || pos < S.n_med) return;
  const float x = S.amax[pos];
  S.n_med = pos + 1;
  auto less = std::less<float>();
  auto greater = std::greater<float>();
  if (!S.med_hi.empty() && x >= S.med_hi.front()) {
    S.med_hi.push_back(x), std::push_heap(S.med_hi.begin(), S.med_hi.end(), greater);
  } else {
    S.med_lo.push_back(x), std::push_heap(S.med_lo.begin(), S.med_lo.end(), less);
  }
  const size_t want_lo = (S.med_lo.size() + S.med_hi.size()) / 2;
  while (S.med_lo.size() > want_lo) {
    std::pop_heap(S.med_lo.begin(), S.med_lo.end(), less);
    S.med_hi.push_back(S.med_lo.back()), S.med_lo.pop_back();
    std::push_heap(S.med_hi.begin(), S.med_hi.end(), greater);
  }
  while (S.med_lo.size() < want_lo) {
    std::pop_heap(S.med_hi.begin(), S.med_hi.end(), greater);
    S.med_lo.push_back(S.med_hi.back()), S.med_hi.pop_back();
    std::push_heap(S.med_lo.begin(), S.med_lo.end(), less);
  }
}

float QuantKvCache::median(const Layer& S) {
  return S.med_hi.empty() ? 0.0f : S.med_hi.front();
}

void QuantKvCache::store(int layer, int cls, const float* k, const float* v, int32_t pos, int32_t t) {
  Segment& g = L_[layer].seg[cls];
  const int hd = cfg_.head_dim;
  const size_t kb = ck_[cls].row_bytes(), vb = cv_[cls].row_bytes();
  for (int h = 0; h < cfg_.n_head_kv; ++h) {
    if (!opt_.kivi) {
      const size_t ok = g.k[h].size();
      g.k[h].resize(ok + kb);
      ck_[cls].quantize(k + h * hd, g.k[h].data() + ok);
    }
    const size_t ov = g.v[h].size();
    g.v[h].resize(ov + vb);
    cv_[cls].quantize(v + h * hd, g.v[h].data() + ov);
  }
  g.pos.push_back(pos);
  g.evict.push_back(t);
}

// A token leaves fp16 at time t (the position being appended). The chunk's queries before t
// read it at fp16 from the snapshot; none exist when t is the chunk's first position.
void QuantKvCache::snapshot(Layer& S, const uint16_t* k, const uint16_t* v, int32_t pos, int32_t t) {
  if (t <= S.n) return;
  S.xk.insert(S.xk.end(), k, k + row_);
  S.xv.insert(S.xv.end(), v, v + row_);
  S.xpos.push_back(pos);
  S.xe.push_back(t);
}

// A token leaves the window at time t: pivot (stays fp16), or quantized into its class; then its
// fp16 copy k16/v16 (the window slot; null without a window) goes to the snapshot.
void QuantKvCache::evict(int layer, const float* k, const float* v, const uint16_t* k16, const uint16_t* v16,
                         int32_t pos, int32_t t, std::vector<float>& tmp) {
  Layer& S = L_[layer];
  const uint8_t kind = static_cast<size_t>(pos) < kinds_.size() ? kinds_[pos] : 0;
  auto cls_of = [&](int32_t p) {
    const uint8_t kd = static_cast<size_t>(p) < kinds_.size() ? kinds_[p] : 0;
    return tsa_[layer] && kd != static_cast<uint8_t>(TokenKind::Vision) ? 1 : 0;
  };
  if (opt_.pivots > 0 && kind != static_cast<uint8_t>(TokenKind::Generated)) {
    const float a = static_cast<size_t>(pos) < S.amax.size() ? S.amax[pos] : 0.0f;
    if (a > 0.0f && a >= opt_.pivot_factor * median(S)) {
      int slot = -1;
      if (static_cast<int>(S.ppos.size()) < opt_.pivots) {
        slot = static_cast<int>(S.ppos.size());
        S.ppos.push_back(pos);
        S.pscore.push_back(a);
        S.pk.resize(S.pk.size() + row_);
        S.pv.resize(S.pv.size() + row_);
      } else {
        const int j = static_cast<int>(std::min_element(S.pscore.begin(), S.pscore.end()) - S.pscore.begin());
        if (a > S.pscore[j]) {  // displace the weakest pivot into its class
          snapshot(S, S.pk.data() + j * row_, S.pv.data() + j * row_, S.ppos[j], t);
          tmp.resize(2 * row_);  // (not the caller's k / v: those live in the window or staging)
          tile::f16_to_f32(S.pk.data() + j * row_, tmp.data(), static_cast<int>(row_));
          tile::f16_to_f32(S.pv.data() + j * row_, tmp.data() + row_, static_cast<int>(row_));
          store(layer, cls_of(S.ppos[j]), tmp.data(), tmp.data() + row_, S.ppos[j], t);
          slot = j;
          S.ppos[j] = pos;
          S.pscore[j] = a;
        }
      }
      if (slot >= 0) {
        ops::f32_to_f16_row(k, S.pk.data() + slot * row_, row_);
        ops::f32_to_f16_row(v, S.pv.data() + slot * row_, row_);
        return;
      }
    }
  }
  if (k16) snapshot(S, k16, v16, pos, t);
  store(layer, cls_of(pos), k, v, pos, t);
}

// kivi2, at time t: the kBlk oldest ring tokens become one K block (per channel) and kBlk V rows.
void QuantKvCache::flush_kivi(int layer, int32_t t) {
  Layer& S = L_[layer];
  const int hd = cfg_.head_dim, nkv = cfg_.n_head_kv;
  std::vector<float> kt(static_cast<size_t>(hd) * kBlk), vrow(row_);
  std::vector<float> kblk(static_cast<size_t>(kBlk) * row_);
  KiviBlock b;
  b.pos0 = S.wpos[S.w_head];
  b.n_valid = kBlk;
  b.evict = t;
  for (int j = 0; j < kBlk; ++j) {
    const int slot = (S.w_head + j) % cap_w_;
    snapshot(S, S.wk.data() + slot * row_, S.wv.data() + slot * row_, S.wpos[slot], t);
    tile::f16_to_f32(S.wk.data() + slot * row_, kblk.data() + j * row_, static_cast<int>(row_));
    tile::f16_to_f32(S.wv.data() + slot * row_, vrow.data(), static_cast<int>(row_));
    store(layer, 0, nullptr, vrow.data(), S.wpos[slot], t);
  }
  const size_t rb = ck_[0].row_bytes();
  b.k.resize(nkv);
  for (int h = 0; h < nkv; ++h) {
    for (int c = 0; c < hd; ++c) {
      for (int j = 0; j < kBlk; ++j) kt[c * kBlk + j] = kblk[j * row_ + h * hd + c];
    }
    b.k[h].resize(rb * hd);
    ck_[0].quantize_rows(kt.data(), kBlk, hd, b.k[h].data(), rb);
  }
  S.kivi.push_back(std::move(b));
  S.w_head = (S.w_head + kBlk) % cap_w_;
  S.w_count -= kBlk;
}

void QuantKvCache::append(int layer, const float* k, const float* v, int n_new) {
  check_layer(layer, "append");
  if (n_new < 0) throw InvalidArgument("[kv] append: negative token count");
  Layer& S = L_[layer];
  if (static_cast<int64_t>(S.n) + n_new > cfg_.n_ctx) {
    throw InvalidArgument("[kv] context full: layer " + std::to_string(layer) + " holds " + std::to_string(S.n) +
                          " tokens, appending " + std::to_string(n_new) +
                          " exceeds n_ctx = " + std::to_string(cfg_.n_ctx));
  }
  if (n_new == 0) return;
  const int hd = cfg_.head_dim;
  const size_t n_val = static_cast<size_t>(n_new) * row_;
  S.sk.assign(k, k + n_val);
  S.sv.assign(v, v + n_val);
  if (opt_.rotate) {
    wht_rows(S.sk.data(), static_cast<int64_t>(n_new) * cfg_.n_head_kv, hd);
    wht_rows(S.sv.data(), static_cast<int64_t>(n_new) * cfg_.n_head_kv, hd);
  }
  S.n_stage = n_new;
  S.xk.clear(), S.xv.clear(), S.xpos.clear(), S.xe.clear();
  if (cap_w_ > 0 && S.wk.empty()) {
    S.wk.resize(static_cast<size_t>(cap_w_) * row_);
    S.wv.resize(static_cast<size_t>(cap_w_) * row_);
    S.wpos.resize(cap_w_);
  }
  std::vector<float> tmp(2 * row_), tmp2;
  std::vector<uint16_t> h16;
  for (int i = 0; i < n_new; ++i) {
    const float* ki = S.sk.data() + i * row_;
    const float* vi = S.sv.data() + i * row_;
    const int32_t pos = S.n + i;
    median_push(S, pos);
    if (cap_w_ == 0) {  // no window: the token is stored (and read) quantized at once
      evict(layer, ki, vi, nullptr, nullptr, pos, pos, tmp2);
      continue;
    }
    if (!opt_.kivi && S.w_count == cap_w_) {
      const int slot = S.w_head;
      tile::f16_to_f32(S.wk.data() + slot * row_, tmp.data(), static_cast<int>(row_));
      tile::f16_to_f32(S.wv.data() + slot * row_, tmp.data() + row_, static_cast<int>(row_));
      evict(layer, tmp.data(), tmp.data() + row_, S.wk.data() + slot * row_, S.wv.data() + slot * row_, S.wpos[slot],
            pos, tmp2);
      S.w_head = (S.w_head + 1) % cap_w_;
      --S.w_count;
    }
    const int slot = (S.w_head + S.w_count) % cap_w_;
    ops::f32_to_f16_row(ki, S.wk.data() + slot * row_, row_);
    ops::f32_to_f16_row(vi, S.wv.data() + slot * row_, row_);
    S.wpos[slot] = pos;
    ++S.w_count;
    if (opt_.kivi && S.w_count - opt_.window >= kBlk) flush_kivi(layer, pos);
  }
  S.n += n_new;
}

int QuantKvCache::restorable(int n) const {
  const int total = L_[0].n;
  if (n >= total) return total;
  if (cap_w_ == 0 && opt_.pivots == 0) return n;
  bool evicted = false;
  for (const Layer& S : L_) evicted |= S.seg[0].n() > 0 || S.seg[1].n() > 0 || !S.ppos.empty() || !S.kivi.empty();
  if (!evicted) return n;
  return ckpt_.n >= 0 && ckpt_.n <= n ? ckpt_.n : 0;
}

int64_t QuantKvCache::Checkpoint::bytes() const {
  int64_t b = 0;
  for (const Stores& c : layers) {
    b += static_cast<int64_t>(c.wk.size() + c.wv.size() + c.pk.size() + c.pv.size()) * 2;
    b += static_cast<int64_t>(c.wpos.size() + c.ppos.size() + c.pscore.size()) * 4;
  }
  return b;
}

void QuantKvCache::checkpoint() {
  if (!opt_.checkpoint) return;
  const int n = L_[0].n;
  for (const Layer& S : L_) {
    if (S.n != n) throw InvalidArgument("[kv] checkpoint: the layers hold different token counts (inside a forward pass)");
  }
  ckpt_.n = n;
  ckpt_.layers.resize(L_.size());
  for (size_t l = 0; l < L_.size(); ++l) {
    const Layer& S = L_[l];
    Checkpoint::Stores& c = ckpt_.layers[l];
    c.wk = S.wk, c.wv = S.wv, c.wpos = S.wpos, c.w_head = S.w_head, c.w_count = S.w_count;
    c.pk = S.pk, c.pv = S.pv, c.ppos = S.ppos, c.pscore = S.pscore;
  }
}

// The per-token state of a layer cut to n tokens, once its stores hold tokens < n only: observed
// max|x|, the running median rebuilt from it, the length, no staged chunk or snapshot.
void QuantKvCache::set_length(Layer& S, int n) {
    if (S.amax.size() > static_cast<size_t>(n)) S.amax.resize(n);
    S.med_lo.clear(), S.med_hi.clear(), S.n_med = 0;
    for (int32_t p = 0; p < n; ++p) median_push(S, p);
    S.n = n;
    S.n_stage = 0;
    S.xk.clear(), S.xv.clear(), S.xpos.clear(), S.xe.clear();
}

// truncate(ckpt_.n): packed rows and kivi blocks evicted at or after the checkpoint are dropped
// (ascending eviction times: a suffix), the fp16 stores copied back, the running median rebuilt.
void QuantKvCache::restore_checkpoint() {
  const int n = ckpt_.n;
  const int nkv = cfg_.n_head_kv;
  for (size_t l = 0; l < L_.size(); ++l) {
    Layer& S = L_[l];
    const Checkpoint::Stores& c = ckpt_.layers[l];
    for (int cl = 0; cl < 2; ++cl) {
      Segment& g = S.seg[cl];
      const size_t keep = static_cast<size_t>(std::lower_bound(g.evict.begin(), g.evict.end(), n) - g.evict.begin());
      for (int h = 0; h < nkv; ++h) {
        if (!opt_.kivi) g.k[h].resize(keep * ck_[cl].row_bytes());
        g.v[h].resize(keep * cv_[cl].row_bytes());
      }
      g.pos.resize(keep);
      g.evict.resize(keep);
    }
    while (!S.kivi.empty() && S.kivi.back().evict >= n) S.kivi.pop_back();
    S.wk = c.wk, S.wv = c.wv, S.wpos = c.wpos, S.w_head = c.w_head, S.w_count = c.w_count;
    S.pk = c.pk, S.pv = c.pv, S.ppos = c.ppos, S.pscore = c.pscore;
    set_length(S, n);
  }
  if (kinds_.size() > static_cast<size_t>(n)) kinds_.resize(n);
}

void QuantKvCache::truncate(int n) {
  int most = 0;
  for (const Layer& S : L_) most = std::max(most, S.n);
  if (n < 0 || n > most) {
    throw InvalidArgument("[kv] truncate(" + std::to_string(n) + "): the cache holds " + std::to_string(most) +
                          " tokens");
  }
  if (n == ckpt_.n && n < most) {
    restore_checkpoint();
    return;
  }
  if (ckpt_.n > n) ckpt_ = Checkpoint();  // its tokens are gone
  const int nkv = cfg_.n_head_kv;
  for (Layer& S : L_) {
    if (S.n <= n) continue;
    while (S.w_count > 0 && S.wpos[(S.w_head + S.w_count - 1) % cap_w_] >= n) --S.w_count;
    std::vector<char> keep(S.ppos.size());
    for (size_t i = 0; i < keep.size(); ++i) keep[i] = S.ppos[i] < n;
    compact(S.pk, keep, row_);
    compact(S.pv, keep, row_);
    compact(S.ppos, keep, 1);
    compact(S.pscore, keep, 1);
    for (int c = 0; c < 2; ++c) {
      Segment& g = S.seg[c];
      keep.assign(g.pos.size(), 0);
      for (size_t i = 0; i < keep.size(); ++i) keep[i] = g.pos[i] < n;
      for (int h = 0; h < nkv; ++h) {
        if (!opt_.kivi) compact(g.k[h], keep, ck_[c].row_bytes());
        compact(g.v[h], keep, cv_[c].row_bytes());
      }
      compact(g.pos, keep, 1);
      compact(g.evict, keep, 1);
      for (int32_t& e : g.evict) e = std::min(e, n);  // read quantized from now on
    }
    while (!S.kivi.empty() && S.kivi.back().pos0 >= n) S.kivi.pop_back();
    if (!S.kivi.empty()) S.kivi.back().n_valid = std::min(S.kivi.back().n_valid, n - S.kivi.back().pos0);
    for (KiviBlock& b : S.kivi) b.evict = std::min(b.evict, n);
    set_length(S, n);
  }
  if (kinds_.size() > static_cast<size_t>(n)) kinds_.resize(n);
}

int64_t QuantKvCache::layer_bytes(int l, std::vector<KvClassStats>* classes) const {
  const Layer& S = L_[l];
  const int nkv = cfg_.n_head_kv;
  std::vector<KvClassStats> cl;
  // a class entry; kinds counted from the positions it stores (only when the summary asks)
  auto add = [&](const std::string& name, int64_t n, int64_t bytes, auto&& each_pos) {
    auto it = std::find_if(cl.begin(), cl.end(), [&](const KvClassStats& s) { return s.name == name; });
    if (it == cl.end()) {
      KvClassStats c;
      c.name = name;
      cl.push_back(c);
      it = cl.end() - 1;
    }
    it->tokens += n, it->bytes += bytes;
    if (classes) {
      each_pos([&](int32_t p) {
        const uint8_t k = static_cast<size_t>(p) < kinds_.size() ? kinds_[p] : 0;
        ++it->kinds[k < 3 ? k : 0];
      });
    }
  };
  auto over = [](const std::vector<int32_t>& v) {
    return [&v](auto&& f) {
      for (int32_t p : v) f(p);
    };
  };
  if (cap_w_ > 0) {
    add("fp16_window", S.w_count, int64_t{S.w_count} * row_ * 4, [&](auto&& f) {
      for (int i = 0; i < S.w_count; ++i) f(S.wpos[(S.w_head + i) % cap_w_]);
    });
  }
  if (opt_.pivots > 0) {
    const int64_t np = static_cast<int64_t>(S.ppos.size());
    add("fp16_pivot", np, np * row_ * 4, over(S.ppos));
  }
  if (opt_.kivi) {
    int64_t kb = 0;
    kb = static_cast<int64_t>(S.kivi.size()) * nkv * cfg_.head_dim * static_cast<int64_t>(ck_[0].row_bytes());
    const int64_t n = S.seg[0].n();
    add("kivi2", n, kb + n * nkv * static_cast<int64_t>(cv_[0].row_bytes()), over(S.seg[0].pos));
  } else {
    for (int c = 0; c < (tsa_[l] ? 2 : 1); ++c) {
      const int64_t n = S.seg[c].n();
      const int64_t b = n * nkv * static_cast<int64_t>(ck_[c].row_bytes() + cv_[c].row_bytes());
      add(class_name(ck_[c].spec(), cv_[c].spec()), n, b, over(S.seg[c].pos));
    }
  }
  int64_t total = 0;
  for (const auto& c : cl) total += c.bytes;
  if (classes) *classes = std::move(cl);
  return total;
}
KvStats QuantKvCache::stats() const {
  KvStats s;
  s.n_tokens = L_[0].n;
  for (int l = 0; l < cfg_.n_layer; ++l) s.bytes += layer_bytes(l, nullptr);
  s.bytes_reserved = s.bytes + ckpt_.bytes();  // the checkpoint is a copy, not cached K/V (no bits)
  const double elems = static_cast<double>(s.n_tokens) * cfg_.n_layer * row_ * 2;
  s.bits_per_element = elems > 0 ? s.bytes * 8.0 / elems : 0.0;
  return s;
}

int64_t QuantKvCache::bytes_bound(int n_tokens) const {
  const int64_t nkv = cfg_.n_head_kv;
  const int64_t fp = std::min<int64_t>(n_tokens, int64_t{cap_w_} + opt_.pivots);  // window ring, pivot store
  const int64_t rest = n_tokens - fp;                                               // packed rows
  int64_t total = 0;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    int64_t packed = 0;
    if (opt_.kivi) {
      const int64_t blocks = (rest + defaults::kKiviBlock - 1) / defaults::kKiviBlock;
      packed = blocks * nkv * cfg_.head_dim * static_cast<int64_t>(ck_[0].row_bytes()) +
               rest * nkv * static_cast<int64_t>(cv_[0].row_bytes());
    } else {
      int64_t per_token = 0;
      for (int c = 0; c < (tsa_[l] ? 2 : 1); ++c) {
        per_token = std::max<int64_t>(per_token, nkv * static_cast<int64_t>(ck_[c].row_bytes() + cv_[c].row_bytes()));
      }
      packed = rest * per_token;
    }
    total += fp * row_ * 4 + packed;
  }
  if (opt_.checkpoint) {  // the checkpoint's copy of the window ring and pivot store (Checkpoint::bytes)
    const int64_t rows = int64_t{cap_w_} + opt_.pivots;
    total += cfg_.n_layer * (rows * row_ * 2 * 2 + rows * 4 + int64_t{opt_.pivots} * 4);
  }
  return total;
}

KvSummary QuantKvCache::summary() const {
  KvSummary s;
  const KvStats st = stats();
  s.mode = cfg_.mode;
  s.n_tokens = st.n_tokens;
  s.bytes = st.bytes;
  s.bytes_reserved = st.bytes_reserved;
  s.bits_per_element = st.bits_per_element;
  s.layers.resize(cfg_.n_layer);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    layer_bytes(l, &s.layers[l].classes);
    s.layers[l].pivots.assign(L_[l].ppos.begin(), L_[l].ppos.end());
    std::sort(s.layers[l].pivots.begin(), s.layers[l].pivots.end());
  }
  s.tsa_layers.assign(opt_.tsa_layers.begin(), opt_.tsa_layers.end());
  s.options = opt_.resolved;
  return s;
}

}  // namespace akvq::kv
