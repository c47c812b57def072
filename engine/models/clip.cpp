// CLIP vision tower forward: embeddings, pre-LN, then each block a straight line of named steps
// over the rows of all images at once (attention stays within each image).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "akvq/error.h"
#include "models/clip.h"
#include "ops/ops.h"

namespace akvq::models {

namespace {
// Grows v to at least n elements (never shrinks).
float* need(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

const float* or_null(const std::vector<float>& v) {
  return v.empty() ? nullptr : v.data();
}
}  // namespace

void Clip::encode(const float* pixels, int n_img, ClipWorkspace& ws, cpu::ThreadPool& pool, float* out) const {
  const ClipHparams& hp = hp_;
  if (n_img < 1) throw InvalidArgument("[clip] encode: no images");
  if (!pixels || !out) throw InvalidArgument("[clip] encode: null data pointer");
  const int S = hp.image_size, P = hp.patch_size, G = S / P;  // G x G patches
  const int64_t E = hp.n_embd, F = hp.n_ff, K = int64_t{3} * P * P;
  const int n_patch = hp.n_patches(), n_pos = hp.n_pos(), cls = hp.has_class_embd ? 1 : 0;
  const int64_t N = int64_t{n_img} * n_pos;                         // rows of all images
  float* patches = need(ws.patches, int64_t{n_img} * n_patch * K);  // [n_img * n_patch, 3 * P * P]
  float* x = need(ws.x, N * E);                                     // [N, n_embd] residual stream
  float* xn = need(ws.xn, N * E);                                   // [N, n_embd] normed / projection output
  float* q = need(ws.q, N * E);                                     // [N, n_head, head_dim]
  float* k = need(ws.k, N * E);                                     // [N, n_head, head_dim]
  float* v = need(ws.v, N * E);                                     // [N, n_head, head_dim]
  float* attn = need(ws.attn, N * E);                               // [N, n_head, head_dim]
  float* ff = need(ws.ff, N * F);                                   // [N, n_ff]
  auto dump = [&](const char* name, int il, const float* data, int64_t rows, int64_t cols) {
    if (ws.hook) ws.hook(name, il, data, rows, cols);
  };

  // patches: row (image b, patch gy * G + gx) = pixels[b, c, gy * P + ky, gx * P + kx] in (c, ky, kx) order
  for (int b = 0; b < n_img; ++b) {
    const float* img = pixels + int64_t{b} * 3 * S * S;
    for (int gy = 0; gy < G; ++gy) {
      for (int gx = 0; gx < G; ++gx) {
        float* row = patches + (int64_t{b} * n_patch + gy * G + gx) * K;
        for (int c = 0; c < 3; ++c) {
          for (int ky = 0; ky < P; ++ky) {
            const float* src = img + (int64_t{c} * S + gy * P + ky) * S + gx * P;
            std::memcpy(row + (c * P + ky) * P, src, sizeof(float) * P);
          }
        }
      }
    }
  }
  // embeddings: [CLS, patch_0 ... patch_{n_patch-1}] + position embeddings, per image
  ops::matmul(patch_w_, patches, int64_t{n_img} * n_patch, xn, pool);  // xn: [n_img * n_patch, n_embd]
  if (!patch_b_.empty()) ops::add_bias(xn, patch_b_.data(), int64_t{n_img} * n_patch, E, pool);
  for (int b = 0; b < n_img; ++b) {
    float* xb = x + int64_t{b} * n_pos * E;
    if (cls) std::memcpy(xb, class_embd_.data(), sizeof(float) * E);
    std::memcpy(xb + cls * E, xn + int64_t{b} * n_patch * E, sizeof(float) * n_patch * E);
    ops::add_inplace(xb, pos_embd_.data(), n_pos * E);
  }
  dump("embd", -1, x, N, E);
  if (!pre_ln_w_.empty()) {
    ops::layer_norm(x, pre_ln_w_.data(), or_null(pre_ln_b_), N, E, hp.eps, x, pool);
    dump("pre_ln", -1, x, N, E);
  }
  // selected hidden states (index 0: here; il + 1: after block il): the rows of each image, CLS
  // dropped ("default") or kept ("full"), at column offset slot * n_embd of out
  const int skip = hp.select == ClipSelect::Default ? cls : 0;
  const int n_out = n_pos - skip;
  const int64_t W = hp.n_embd_out();
  auto take = [&](int index) {
    for (size_t slot = 0; slot < hp.feature_layers.size(); ++slot) {
      if (hp.feature_layers[slot] != index) continue;
      for (int b = 0; b < n_img; ++b) {
        for (int r = 0; r < n_out; ++r) {
          std::memcpy(out + (int64_t{b} * n_out + r) * W + static_cast<int64_t>(slot) * E,
                      x + (int64_t{b} * n_pos + skip + r) * E, sizeof(float) * E);
        }
      }
    }
  };
  take(0);

  const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
  for (int il = 0; il < static_cast<int>(layers_.size()); ++il) {
    const ClipLayer& L = layers_[il];
    // attention block
    ops::layer_norm(x, L.ln1_w.data(), L.ln1_b.data(), N, E, hp.eps, xn, pool);
    dump("ln1", il, xn, N, E);
    ops::matmul_group({{&L.wq, q}, {&L.wk, k}, {&L.wv, v}}, xn, N, pool);  // one pool pass for the three
    ops::add_bias(q, L.bq.data(), N, E, pool);
    ops::add_bias(k, L.bk.data(), N, E, pool);
    ops::add_bias(v, L.bv.data(), N, E, pool);
    dump("q", il, q, N, E);
    dump("k", il, k, N, E);
    dump("v", il, v, N, E);
    ops::attention(q, k, v, n_img, n_pos, hp.n_head, hp.head_dim, scale, attn, pool);
    dump("attn", il, attn, N, E);
    ops::matmul(L.wo, attn, N, xn, pool);  // xn: attention output [N, n_embd]
    ops::add_bias(xn, L.bo.data(), N, E, pool);
    dump("attn_out", il, xn, N, E);
    ops::add_inplace(x, xn, N * E);
    // MLP block
    ops::layer_norm(x, L.ln2_w.data(), L.ln2_b.data(), N, E, hp.eps, xn, pool);
    dump("ln2", il, xn, N, E);
    ops::matmul(L.w_fc1, xn, N, ff, pool);
    ops::add_bias(ff, L.b_fc1.data(), N, F, pool);
    ops::activation(hp.act, ff, N, F, pool);
    dump("ffn_act", il, ff, N, F);
    ops::matmul(L.w_fc2, ff, N, xn, pool);  // xn: MLP output [N, n_embd]
    ops::add_bias(xn, L.b_fc2.data(), N, E, pool);
    dump("ffn_out", il, xn, N, E);
    ops::add_inplace(x, xn, N * E);
    dump("l_out", il, x, N, E);
    take(il + 1);
  }
}

}  // namespace akvq::models
