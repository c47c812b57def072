// A small synthetic llama model for tests: random weights (seeded), written as GGUF bytes with a
// byte-level gpt2 vocabulary (256 byte tokens + 4 specials), plus a naive f32 forward pass used as
// the reference (plain loops, double accumulation, adjacent-pair RoPE written out here).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "test_llama_gguf_writer.h"

namespace akvq::testing {

struct SynthLlama {
  int n_vocab = 260, n_embd = 64, n_head = 4, n_head_kv = 2, n_ff = 96, n_layer = 2;
  int head_dim() const { return n_embd / n_head; }
  float theta = 10000.0f, eps = 1e-5f;
  bool tied = true;
  bool merges = true;                        // write tokenizer.ggml.merges (empty)
  std::map<std::string, uint32_t> extra_u32;  // more keys (e.g. llama.vocab_size)
  std::string rope_type;                      // llama.rope.scaling.type when not empty
  float rope_factor = 0.0f;                   // llama.rope.scaling.factor when not 0 (positions / factor)
  // A tensor "rope_freqs.weight" in w: per-pair divisors of the RoPE frequencies (Llama 3 files).
  uint32_t wtype = 0;                           // 0 F32, 1 F16 or 8 Q8_0 for the 2-D weights
  std::map<std::string, std::vector<float>> w;  // name -> values (innermost dim last)
  std::map<std::string, std::vector<int64_t>> ne;

  explicit SynthLlama(uint32_t seed = 1, bool tied_ = true, uint32_t wtype_ = 0) : tied(tied_), wtype(wtype_) {
    std::mt19937 g(seed);
    auto rnd = [&](const std::string& name, std::vector<int64_t> dims, float amp, float base) {
      size_t n = 1;
      for (int64_t d : dims) n *= static_cast<size_t>(d);
      std::vector<float> x(n);
      for (float& f : x) f = base + amp * (2.0f * static_cast<float>(g() >> 8) / 16777216.0f - 1.0f);
      w[name] = x;
      ne[name] = dims;
    };
    const int64_t E = n_embd, Q = n_embd, KV = int64_t(n_head_kv) * head_dim(), F = n_ff;
    rnd("token_embd.weight", {E, n_vocab}, 1.0f, 0.0f);
    rnd("output_norm.weight", {E}, 0.2f, 1.0f);
    if (!tied) rnd("output.weight", {E, n_vocab}, 0.3f, 0.0f);
    for (int l = 0; l < n_layer; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      const float a = 1.0f / std::sqrt(float(E));
      rnd(p + "attn_norm.weight", {E}, 0.2f, 1.0f);
      rnd(p + "attn_q.weight", {E, Q}, 2.0f * a, 0.0f);
      rnd(p + "attn_k.weight", {E, KV}, 2.0f * a, 0.0f);
      rnd(p + "attn_v.weight", {E, KV}, a, 0.0f);
      rnd(p + "attn_output.weight", {Q, E}, a, 0.0f);
      rnd(p + "ffn_norm.weight", {E}, 0.2f, 1.0f);
      rnd(p + "ffn_gate.weight", {E, F}, a, 0.0f);
      rnd(p + "ffn_up.weight", {E, F}, a, 0.0f);
      rnd(p + "ffn_down.weight", {F, E}, 1.0f / std::sqrt(float(F)), 0.0f);
    }
  }

  // GGUF image; `skip` omits a tensor, `override_arch` replaces general.architecture.
  std::vector<uint8_t> gguf(const std::string& skip = "", const std::string& arch = "llama") const {
    GgufWriter wr;
    wr.str("general.architecture", arch);
    wr.str("general.name", "synthetic");
    write_llama_hparams(wr, arch, 2048, n_embd, n_layer, n_ff, n_head, n_head_kv, theta, eps);
    // byte-level gpt2 vocabulary: token i < 256 is byte i in GPT-2's byte-to-unicode mapping
    std::vector<std::string> toks;
    std::vector<int32_t> types;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const uint32_t cp = direct ? b : 256 + extra++;
      std::string s;
      if (cp < 0x80)
        s += char(cp);
      else
        s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
      toks.push_back(s);
      types.push_back(1);
    }
    for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"}) {
      toks.push_back(s);
      types.push_back(3);
    }
    wr.str("tokenizer.ggml.model", "gpt2");
    wr.str("tokenizer.ggml.pre", "default");
    wr.str_array("tokenizer.ggml.tokens", toks);
    wr.i32_array("tokenizer.ggml.token_type", types);
    if (merges) wr.str_array("tokenizer.ggml.merges", {});
    for (const auto& [k, v] : extra_u32) wr.u32(k, v);
    if (!rope_type.empty()) wr.str(arch + ".rope.scaling.type", rope_type);
    if (rope_factor != 0.0f) wr.f32(arch + ".rope.scaling.factor", rope_factor);
    wr.u32("tokenizer.ggml.bos_token_id", 256);
    wr.u32("tokenizer.ggml.eos_token_id", 258);
    wr.boolean("tokenizer.ggml.add_bos_token", false);
    for (const auto& [name, x] : w) {
      if (name == skip) continue;
      const auto& d = ne.at(name);
      wr.tensor(name, d, x, d.size() == 2 ? wtype : 0);
    }
    return wr.bytes();
  }

  // Naive forward over the whole sequence; returns logits [n, n_vocab]. K/V are rounded to
  // fp16 as the f16 cache stores them. Weights as written (F32 only: quantized types differ).
  std::vector<float> reference(const std::vector<int32_t>& ids) const {
    const int n = static_cast<int>(ids.size()), E = n_embd, D = head_dim();
    const int KV = n_head_kv * D, F = n_ff;
    auto lin = [&](const std::string& name, const std::vector<float>& x, int n_in, int n_out) {
      const auto& W = w.at(name);  // [n_out, n_in]
      std::vector<float> y(size_t(n) * n_out);
      for (int t = 0; t < n; ++t)
        for (int o = 0; o < n_out; ++o) {
          double s = 0;
          for (int i = 0; i < n_in; ++i) s += double(W[size_t(o) * n_in + i]) * x[size_t(t) * n_in + i];
          y[size_t(t) * n_out + o] = float(s);
        }
      return y;
    };
    auto norm = [&](const std::vector<float>& x, const std::string& name) {
      const auto& g = w.at(name);
      std::vector<float> y(x.size());
      for (int t = 0; t < n; ++t) {
        double ss = 0;
        for (int i = 0; i < E; ++i) ss += double(x[size_t(t) * E + i]) * x[size_t(t) * E + i];
        const double r = 1.0 / std::sqrt(ss / E + eps);
        for (int i = 0; i < E; ++i) y[size_t(t) * E + i] = float(x[size_t(t) * E + i] * r * g[i]);
      }
      return y;
    };
    auto rope = [&](std::vector<float>& x, int heads) {
      for (int t = 0; t < n; ++t)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < D / 2; ++i) {
            double ang = t * std::pow(double(theta), -2.0 * i / D);
            if (rope_factor != 0.0f) ang /= rope_factor;
            if (w.count("rope_freqs.weight")) ang /= w.at("rope_freqs.weight")[i];
            float* p = &x[(size_t(t) * heads + h) * D + 2 * i];
            const double x0 = p[0], x1 = p[1];
            p[0] = float(x0 * std::cos(ang) - x1 * std::sin(ang));
            p[1] = float(x0 * std::sin(ang) + x1 * std::cos(ang));
          }
    };
    const auto& emb = w.at("token_embd.weight");
    std::vector<float> x(size_t(n) * E);
    for (int t = 0; t < n; ++t)
      for (int i = 0; i < E; ++i) x[size_t(t) * E + i] = emb[size_t(ids[t]) * E + i];
    for (int l = 0; l < n_layer; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      auto xn = norm(x, p + "attn_norm.weight");
      auto q = lin(p + "attn_q.weight", xn, E, E);
      auto k = lin(p + "attn_k.weight", xn, E, KV);
      auto v = lin(p + "attn_v.weight", xn, E, KV);
      rope(q, n_head);
      rope(k, n_head_kv);
      for (float& f : k) f = fp16_to_f32(f32_to_fp16(f));
      for (float& f : v) f = fp16_to_f32(f32_to_fp16(f));
      std::vector<float> att(size_t(n) * E);
      const int group = n_head / n_head_kv;
      for (int t = 0; t < n; ++t)
        for (int h = 0; h < n_head; ++h) {
          const int kh = h / group;
          std::vector<double> s(t + 1);
          double mx = -1e300, sum = 0;
          for (int u = 0; u <= t; ++u) {
            double d = 0;
            for (int c = 0; c < D; ++c)
              d += double(q[(size_t(t) * n_head + h) * D + c]) * k[(size_t(u) * n_head_kv + kh) * D + c];
            s[u] = d / std::sqrt(double(D));
            mx = std::max(mx, s[u]);
          }
          for (double& e : s) sum += (e = std::exp(e - mx));
          for (int c = 0; c < D; ++c) {
            double acc = 0;
            for (int u = 0; u <= t; ++u) acc += s[u] * v[(size_t(u) * n_head_kv + kh) * D + c];
            att[(size_t(t) * n_head + h) * D + c] = float(acc / sum);
          }
        }
      auto o = lin(p + "attn_output.weight", att, E, E);
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      xn = norm(x, p + "ffn_norm.weight");
      auto gt = lin(p + "ffn_gate.weight", xn, E, F);
      auto up = lin(p + "ffn_up.weight", xn, E, F);
      for (size_t i = 0; i < gt.size(); ++i) gt[i] = float(gt[i] / (1.0 + std::exp(-double(gt[i]))) * up[i]);
      auto dn = lin(p + "ffn_down.weight", gt, F, E);
      for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
    }
    auto xo = norm(x, "output_norm.weight");
    return lin(tied ? "token_embd.weight" : "output.weight", xo, E, n_vocab);
  }
};

// Writes bytes to the test temp directory under name; returns the path.
inline std::string write_temp(const std::vector<uint8_t>& bytes, const std::string& name) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

}  // namespace akvq::testing
