// The CLIP vision tower and LLaVA projector on a synthetic model (random F32 weights written as an
// mmproj GGUF in memory) against a naive double-precision forward written out here: every feature
// layer, both strategies, both activations; legacy files (block dropped, ffn names swapped); batch
// invariance; the load errors naming the key or tensor at fault. The golden tests against
// transformers are in tests/python/test_clip.py.
// Tolerance: 1e-5 of the largest |value| (f32 kernels vs double; measured ~1e-7).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "cpu/thread_pool.h"
#include "gguf/gguf.h"
#include "models/clip.h"
#include "models/llava.h"
#include "test_llama_gguf_writer.h"

using namespace akvq;

namespace {

struct SynthClip {
  int S = 16, P = 4, E = 32, H = 2, F = 48, L = 3, M = 40, O = 24;  // image, patch, widths, layers
  int G() const { return S / P; }
  int n_pos() const { return G() * G() + 1; }
  std::map<std::string, std::vector<float>> w;
  std::map<std::string, std::vector<int64_t>> ne;  // innermost first

  explicit SynthClip(uint32_t seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto rnd = [&](const std::string& name, std::vector<int64_t> dims, float amp, float base) {
      size_t n = 1;
      for (int64_t d : dims) n *= static_cast<size_t>(d);
      std::vector<float> x(n);
      for (float& f : x) f = base + amp * nd(g);
      w[name] = x;
      ne[name] = dims;
    };
    rnd("v.patch_embd.weight", {P, P, 3, E}, 1.0f / std::sqrt(3.0f * P * P), 0);
    rnd("v.class_embd", {E}, 0.5f, 0);
    rnd("v.position_embd.weight", {E, n_pos()}, 0.5f, 0);
    rnd("v.pre_ln.weight", {E}, 0.2f, 1);
    rnd("v.pre_ln.bias", {E}, 0.2f, 0);
    const float a = 1.5f / std::sqrt(float(E));
    for (int l = 0; l < L; ++l) {
      const std::string p = "v.blk." + std::to_string(l) + ".";
      for (const char* n : {"ln1", "ln2"}) rnd(p + n + ".weight", {E}, 0.2f, 1), rnd(p + n + ".bias", {E}, 0.2f, 0);
      for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
        rnd(p + n + ".weight", {E, E}, a, 0);
        rnd(p + n + ".bias", {E}, 0.3f, 0);
      }
      rnd(p + "ffn_up.weight", {E, F}, a, 0);  // fc1
      rnd(p + "ffn_up.bias", {F}, 0.3f, 0);
      rnd(p + "ffn_down.weight", {F, E}, 1.5f / std::sqrt(float(F)), 0);  // fc2
      rnd(p + "ffn_down.bias", {E}, 0.3f, 0);
    }
    rnd("mm.0.weight", {E, M}, a, 0);
    rnd("mm.0.bias", {M}, 0.3f, 0);
    rnd("mm.2.weight", {M, O}, 1.5f / std::sqrt(float(M)), 0);
    rnd("mm.2.bias", {O}, 0.3f, 0);
  }

  struct Opts {
    int feature_layer = -2;  // written as akvq.vision.feature_layer unless no_key
    bool no_key = false;
    bool full = false;
    bool gelu = false;
    bool legacy = false;  // last block not stored, fc1/fc2 as ffn_down/ffn_up, no keys
    std::string skip;     // a tensor left out
    std::string projector = "mlp";
    std::vector<int32_t> layers;  // llama.cpp's clip.vision.feature_layer array instead of our key
    std::string proj_act;         // akvq.vision.projector_hidden_act when set
    std::string hidden_act;       // akvq.vision.hidden_act when set
    int image_size = 0;           // override clip.vision.image_size
  };

  std::unique_ptr<gguf::File> file(const Opts& o) const {
    akvq::testing::GgufWriter wr;
    wr.str("general.architecture", "clip");
    wr.boolean("clip.has_vision_encoder", true);
    wr.str("clip.projector_type", o.projector);
    wr.u32("clip.vision.image_size", o.image_size ? o.image_size : S);
    wr.u32("clip.vision.patch_size", P);
    wr.u32("clip.vision.embedding_length", E);
    wr.u32("clip.vision.feed_forward_length", F);
    wr.u32("clip.vision.block_count", o.legacy ? L - 1 : L);
    wr.u32("clip.vision.attention.head_count", H);
    wr.f32("clip.vision.attention.layer_norm_epsilon", 1e-5f);
    wr.boolean("clip.use_gelu", o.gelu);
    if (!o.layers.empty()) {
      wr.i32_array("clip.vision.feature_layer", o.layers);
    } else if (!o.legacy && !o.no_key) {
      wr.i32("akvq.vision.feature_layer", o.feature_layer);
    }
    if (o.full) wr.str("akvq.vision.select_strategy", "full");
    if (!o.proj_act.empty()) wr.str("akvq.vision.projector_hidden_act", o.proj_act);
    if (!o.hidden_act.empty()) wr.str("akvq.vision.hidden_act", o.hidden_act);
    for (const auto& [name, x] : w) {
      if (name == o.skip) continue;
      std::string n = name;
      if (o.legacy) {
        if (name.rfind("v.blk." + std::to_string(L - 1) + ".", 0) == 0) continue;
        if (n.find("ffn_up") != std::string::npos) {
          n.replace(n.find("ffn_up"), 6, "ffn_down");
        } else if (n.find("ffn_down") != std::string::npos) {
          n.replace(n.find("ffn_down"), 8, "ffn_up");
        }
      }
      wr.tensor(n, ne.at(name), x, 0);
    }
    const auto bytes = wr.bytes();
    return gguf::File::from_bytes(bytes.data(), bytes.size(), "synthetic-clip");
  }

  // Naive forward in double: hidden state `layer` (0..L) of each image [n_img, n_pos, E].
  std::vector<double> hidden(const std::vector<float>& px, int n_img, int layer, bool gelu) const {
    const int N = n_pos(), D = E / H;
    std::vector<double> out;
    auto ln = [&](const std::vector<double>& x, const std::string& p) {
      std::vector<double> y(x.size());
      const auto &g = w.at(p + ".weight"), &b = w.at(p + ".bias");
      for (int t = 0; t < N; ++t) {
        double m = 0, v = 0;
        for (int i = 0; i < E; ++i) m += x[t * E + i];
        m /= E;
        for (int i = 0; i < E; ++i) v += (x[t * E + i] - m) * (x[t * E + i] - m);
        const double r = 1.0 / std::sqrt(v / E + 1e-5);
        for (int i = 0; i < E; ++i) y[t * E + i] = (x[t * E + i] - m) * r * g[i] + b[i];
      }
      return y;
    };
    auto lin = [&](const std::vector<double>& x, const std::string& p, int n_in, int n_out) {
      std::vector<double> y(size_t(N) * n_out);
      const auto &W = w.at(p + ".weight"), &b = w.at(p + ".bias");
      for (int t = 0; t < N; ++t)
        for (int o = 0; o < n_out; ++o) {
          double s = b[o];
          for (int i = 0; i < n_in; ++i) s += W[size_t(o) * n_in + i] * x[size_t(t) * n_in + i];
          y[size_t(t) * n_out + o] = s;
        }
      return y;
    };
    for (int b = 0; b < n_img; ++b) {
      std::vector<double> x(size_t(N) * E);
      const auto& pw = w.at("v.patch_embd.weight");  // [E, 3, P, P]
      for (int e = 0; e < E; ++e) x[e] = w.at("v.class_embd")[e];
      for (int gy = 0; gy < G(); ++gy)
        for (int gx = 0; gx < G(); ++gx)
          for (int e = 0; e < E; ++e) {
            double s = 0;
            for (int c = 0; c < 3; ++c)
              for (int ky = 0; ky < P; ++ky)
                for (int kx = 0; kx < P; ++kx)
                  s += pw[((size_t(e) * 3 + c) * P + ky) * P + kx] *
                       px[((size_t(b) * 3 + c) * S + gy * P + ky) * S + gx * P + kx];
            x[(1 + gy * G() + gx) * E + e] = s;
          }
      for (size_t i = 0; i < x.size(); ++i) x[i] += w.at("v.position_embd.weight")[i];
      x = ln(x, "v.pre_ln");
      for (int l = 0; l < layer; ++l) {
        const std::string p = "v.blk." + std::to_string(l) + ".";
        auto h = ln(x, p + "ln1");
        auto q = lin(h, p + "attn_q", E, E), k = lin(h, p + "attn_k", E, E), v = lin(h, p + "attn_v", E, E);
        std::vector<double> att(x.size());
        for (int hh = 0; hh < H; ++hh)
          for (int i = 0; i < N; ++i) {
            std::vector<double> s(N);
            double mx = -1e300, sum = 0;
            for (int j = 0; j < N; ++j) {
              double d = 0;
              for (int c = 0; c < D; ++c) d += q[i * E + hh * D + c] * k[j * E + hh * D + c];
              s[j] = d / std::sqrt(double(D));
              mx = std::max(mx, s[j]);
            }
            for (int j = 0; j < N; ++j) sum += (s[j] = std::exp(s[j] - mx));
            for (int c = 0; c < D; ++c) {
              double acc = 0;
              for (int j = 0; j < N; ++j) acc += s[j] * v[j * E + hh * D + c];
              att[i * E + hh * D + c] = acc / sum;
            }
          }
        auto o = lin(att, p + "attn_out", E, E);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
        auto f = lin(ln(x, p + "ln2"), p + "ffn_up", E, F);
        for (double& z : f) z = gelu ? 0.5 * z * std::erfc(-z / std::sqrt(2.0)) : z / (1.0 + std::exp(-1.702 * z));
        auto d = lin(f, p + "ffn_down", F, E);
        for (size_t i = 0; i < x.size(); ++i) x[i] += d[i];
      }
      out.insert(out.end(), x.begin(), x.end());
    }
    return out;
  }
};

std::vector<float> pixels(int n_img, int S, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> px(size_t(n_img) * 3 * S * S);
  for (float& f : px) f = nd(g);
  return px;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  double amax = 0, err = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    amax = std::max(amax, std::fabs(want[i]));
    err = std::max(err, std::fabs(got[i] - want[i]));
  }
  EXPECT_LE(err, 1e-5 * amax) << "max |diff| " << err << " of max |value| " << amax;
}

// The selected rows of hidden [n_img, n_pos, E]: CLS dropped unless full.
std::vector<double> select(const std::vector<double>& h, int n_img, int n_pos, int E, bool full) {
  std::vector<double> out;
  for (int b = 0; b < n_img; ++b) {
    const auto* r = h.data() + size_t(b) * n_pos * E;
    out.insert(out.end(), r + (full ? 0 : E), r + size_t(n_pos) * E);
  }
  return out;
}

std::vector<float> features(const models::Clip& clip, const std::vector<float>& px, int n_img, int threads = 2) {
  cpu::ThreadPool pool(threads);
  models::ClipWorkspace ws;
  std::vector<float> out(size_t(n_img) * clip.hparams().n_out() * clip.hparams().n_embd_out());
  clip.encode(px.data(), n_img, ws, pool, out.data());
  return out;
}

}  // namespace

TEST(ClipSynth, EveryFeatureLayerStrategyAndActivation) {
  const SynthClip m(3);
  const int n_img = 2;
  const auto px = pixels(n_img, m.S, 4);
  for (bool gelu : {false, true}) {
    for (int layer : {0, 1, 2, 3, -1, -2, -4}) {
      for (bool full : {false, true}) {
        SCOPED_TRACE(std::string(gelu ? "gelu" : "quick_gelu") + " layer " + std::to_string(layer) +
                     (full ? " full" : " default"));
        SynthClip::Opts o;
        o.feature_layer = layer;
        o.full = full;
        o.gelu = gelu;
        const auto f = m.file(o);
        const models::Clip clip(*f);
        const int idx = layer < 0 ? m.L + 1 + layer : layer;
        EXPECT_EQ(clip.hparams().feature_layer, idx);
        EXPECT_EQ(clip.hparams().n_out(), full ? 17 : 16);
        expect_close(features(clip, px, n_img), select(m.hidden(px, n_img, idx, gelu), n_img, 17, m.E, full));
      }
    }
  }
}

TEST(ClipSynth, ProjectorAfterTheTowerEveryActivation) {
  const SynthClip m(5);
  const auto px = pixels(3, m.S, 6);
  const auto feat = select(m.hidden(px, 3, m.L - 1, false), 3, 17, m.E, false);
  const std::map<std::string, double (*)(double)> acts = {
      {"", [](double s) { return 0.5 * s * std::erfc(-s / std::sqrt(2.0)); }},  // default: gelu (erf)
      {"gelu", [](double s) { return 0.5 * s * std::erfc(-s / std::sqrt(2.0)); }},
      {"gelu_pytorch_tanh",
       [](double s) { return 0.5 * s * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (s + 0.044715 * s * s * s))); }},
      {"quick_gelu", [](double s) { return s / (1.0 + std::exp(-1.702 * s)); }},
      {"silu", [](double s) { return s / (1.0 + std::exp(-s)); }},
      {"relu", [](double s) { return s > 0 ? s : 0.0; }},
  };
  for (const auto& [name, fn] : acts) {
    SCOPED_TRACE(name);
    SynthClip::Opts o;
    o.proj_act = name;
    const auto f = m.file(o);
    const models::Llava llava(*f);
    EXPECT_EQ(llava.projector().n_embd_out(), m.O);
    cpu::ThreadPool pool(2);
    models::ClipWorkspace ws;
    std::vector<float> hidden, out(size_t(3) * 16 * m.O);
    llava.encode_images(px.data(), 3, ws, hidden, pool, out.data());
    std::vector<double> want;
    const auto &w1 = m.w.at("mm.0.weight"), &b1 = m.w.at("mm.0.bias"), &w2 = m.w.at("mm.2.weight"),
               &b2 = m.w.at("mm.2.bias");
    for (size_t t = 0; t < feat.size() / m.E; ++t) {
      std::vector<double> h(m.M);
      for (int o2 = 0; o2 < m.M; ++o2) {
        double s = b1[o2];
        for (int i = 0; i < m.E; ++i) s += w1[size_t(o2) * m.E + i] * feat[t * m.E + i];
        h[o2] = fn(s);
      }
      for (int o2 = 0; o2 < m.O; ++o2) {
        double s = b2[o2];
        for (int i = 0; i < m.M; ++i) s += w2[size_t(o2) * m.M + i] * h[i];
        want.push_back(s);
      }
    }
    expect_close(out, want);
  }
  // the vision MLP's activation by name overrides clip.use_gelu
  SynthClip::Opts o;
  o.hidden_act = "gelu";
  o.feature_layer = -1;
  const auto f = m.file(o);
  const models::Clip clip(*f);
  EXPECT_EQ(clip.hparams().act, ops::Activation::Gelu);
  expect_close(features(clip, px, 3), select(m.hidden(px, 3, m.L, true), 3, 17, m.E, false));
}

TEST(ClipSynth, SeveralFeatureLayersConcatenate) {
  // llama.cpp's array key (transformers' list-valued vision_feature_layer): the listed hidden states
  // side by side, in the listed order
  const SynthClip m(15);
  const auto px = pixels(2, m.S, 16);
  for (bool full : {false, true}) {
    SynthClip::Opts o;
    o.layers = {3, 0, 1};
    o.full = full;
    const auto f = m.file(o);
    const models::Clip clip(*f);
    EXPECT_EQ(clip.hparams().feature_layer, 3);
    EXPECT_EQ(clip.hparams().n_embd_out(), 3 * m.E);
    const int rows = full ? 17 : 16;
    std::vector<std::vector<double>> parts;
    for (int l : o.layers) parts.push_back(select(m.hidden(px, 2, l, false), 2, 17, m.E, full));
    std::vector<double> want;
    for (int r = 0; r < 2 * rows; ++r) {
      for (const auto& p : parts) want.insert(want.end(), p.begin() + r * m.E, p.begin() + (r + 1) * m.E);
    }
    expect_close(features(clip, px, 2), want);
  }
}

TEST(ClipSynth, LegacyFileEqualsFeatureLayerMinusTwo) {
  const SynthClip m(7);
  const auto px = pixels(2, m.S, 8);
  SynthClip::Opts legacy;
  legacy.legacy = true;
  const auto fl = m.file(legacy);
  const models::Clip a(*fl);
  EXPECT_TRUE(a.hparams().ffn_swapped);
  EXPECT_EQ(a.hparams().n_layer, m.L - 1);
  EXPECT_EQ(a.hparams().feature_layer, m.L - 1);
  const auto fm = m.file({});
  const models::Clip b(*fm);
  EXPECT_FALSE(b.hparams().ffn_swapped);
  EXPECT_EQ(features(a, px, 2), features(b, px, 2));
  // without any key a modern file runs every stored block (llama.cpp's reading)
  SynthClip::Opts nokey;
  nokey.no_key = true;
  const auto fn = m.file(nokey);
  EXPECT_EQ(models::Clip(*fn).hparams().feature_layer, m.L);
}

TEST(ClipSynth, ImagesAreBatchInvariant) {
  const SynthClip m(9);
  const auto px = pixels(3, m.S, 10);
  const auto f = m.file({});
  const models::Clip clip(*f);
  const auto all = features(clip, px, 3, 3);
  const size_t per = size_t(16) * m.E, per_px = size_t(3) * m.S * m.S;
  for (int b = 0; b < 3; ++b) {
    const std::vector<float> one_px(px.begin() + b * per_px, px.begin() + (b + 1) * per_px);
    const auto one = features(clip, one_px, 1, 1);
    ASSERT_EQ(0, std::memcmp(one.data(), all.data() + b * per, per * sizeof(float))) << b;
  }
}

TEST(ClipSynth, DebugHookSeesNamedSteps) {
  const SynthClip m(11);
  const auto f = m.file({});
  const models::Clip clip(*f);
  cpu::ThreadPool pool(1);
  models::ClipWorkspace ws;
  std::vector<std::string> seen;
  ws.hook = [&](const char* name, int layer, const float*, int64_t rows, int64_t cols) {
    seen.push_back(std::string(name) + "/" + std::to_string(layer));
    EXPECT_EQ(rows, 17);
    EXPECT_GT(cols, 0);
  };
  const auto px = pixels(1, m.S, 12);
  std::vector<float> out(size_t(16) * m.E);
  clip.encode(px.data(), 1, ws, pool, out.data());
  EXPECT_EQ(seen.front(), "embd/-1");
  EXPECT_NE(std::find(seen.begin(), seen.end(), "attn/1"), seen.end());
  EXPECT_EQ(seen.back(), "l_out/1");  // feature layer -2 of 3: blocks 0 and 1
}

TEST(ClipSynth, LoadErrorsNameTheCulprit) {
  const SynthClip m(13);
  auto expect_msg = [&](const SynthClip::Opts& o, const std::string& part, bool unavailable) {
    SCOPED_TRACE(part);
    const auto f = m.file(o);
    try {
      const models::Llava l(*f);
      FAIL() << "no exception";
    } catch (const FormatError& e) {
      EXPECT_FALSE(unavailable);
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    } catch (const Unavailable& e) {
      EXPECT_TRUE(unavailable);
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  SynthClip::Opts o;
  o.skip = "v.blk.1.attn_k.bias";
  expect_msg(o, "tensor 'v.blk.1.attn_k.bias' is missing", false);
  o.skip = "mm.2.weight";
  expect_msg(o, "tensor 'mm.2.weight' of the projector is missing", false);
  o.skip = "v.patch_embd.weight";
  expect_msg(o, "no vision encoder", true);
  // settings of a vision tower that is there but that this engine cannot run: a file it cannot
  // read (FormatError, as an unsupported tokenizer.ggml.pre), not a missing tower (Unavailable,
  // which akvq-cli answers with the hint to give one by --mmproj)
  o = {};
  o.projector = "ldp";
  expect_msg(o, "projector type 'ldp' is not supported", false);
  o = {};
  o.proj_act = "gelu_new";
  expect_msg(o, "projector activation 'gelu_new' is not supported", false);
  o = {};
  o.hidden_act = "tanh";
  expect_msg(o, "'akvq.vision.hidden_act' = 'tanh' is not supported", false);
  o = {};
  o.feature_layer = 4;
  expect_msg(o, "'akvq.vision.feature_layer' = 4 is out of range [-4, 3]", false);
  o = {};
  o.image_size = 18;
  expect_msg(o, "image_size 18 is not a multiple of patch_size 4", false);
  // several feature layers widen the projector's input: a projector for one layer does not fit
  o = {};
  o.layers = {1, 3};
  expect_msg(o, "tensor 'mm.0.weight' has shape {32, 40}, expected {64, 40}", false);
}
