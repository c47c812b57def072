// Scalar references for the vision-transformer ops (LayerNorm, bias, GELU, quick GELU, non-causal
// attention). Written for clarity; accumulations and transcendental functions in double.
#include <cmath>
#include <vector>

#include "ops/ref.h"

namespace akvq::ops::ref {

void layer_norm(const float* x, const float* w, const float* b, int64_t n_tok, int64_t n, float eps, float* y) {
  for (int64_t t = 0; t < n_tok; ++t, x += n, y += n) {
    double mean = 0.0;
    for (int64_t i = 0; i < n; ++i) mean += x[i];
    mean /= static_cast<double>(n);
    double var = 0.0;
    for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
    var /= static_cast<double>(n);
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < n; ++i) {
      y[i] = static_cast<float>((x[i] - mean) * rstd * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f));
    }
  }
}

void add_bias(float* x, const float* b, int64_t n_tok, int64_t n) {
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t i = 0; i < n; ++i) x[t * n + i] += b[i];
  }
}

void gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    x[i] = static_cast<float>(0.5 * v * std::erfc(-v / std::sqrt(2.0)));  // = 0.5 v (1 + erf(v / sqrt 2))
  }
}

void quick_gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    x[i] = static_cast<float>(v / (1.0 + std::exp(-1.702 * v)));
  }
}

void activation(Activation a, float* x, int64_t n) {
  switch (a) {
    case Activation::Gelu: gelu(x, n); return;
    case Activation::QuickGelu: quick_gelu(x, n); return;
    default: break;
  }
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    double y = 0.0;
    if (a == Activation::GeluTanh) {
      // 0.5 v (1 + tanh(u)) written as v sigmoid(2 u): no cancellation in the negative tail
      y = v / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    } else if (a == Activation::Silu) {
      y = v / (1.0 + std::exp(-v));
    } else {
      y = v > 0.0 ? v : 0.0;
    }
    x[i] = static_cast<float>(y);
  }
}

void attention(const float* q, const float* k, const float* v, int n_seq, int seq_len, int n_head, int head_dim,
               float scale, float* out) {
  const int64_t E = static_cast<int64_t>(n_head) * head_dim;
  std::vector<double> p(static_cast<size_t>(seq_len));
  for (int s = 0; s < n_seq; ++s) {
    const int64_t r0 = static_cast<int64_t>(s) * seq_len;
    for (int h = 0; h < n_head; ++h) {
      for (int i = 0; i < seq_len; ++i) {
        const float* qi = q + (r0 + i) * E + h * head_dim;
        double mx = -INFINITY;
        for (int j = 0; j < seq_len; ++j) {
          const float* kj = k + (r0 + j) * E + h * head_dim;
          double d = 0.0;
          for (int c = 0; c < head_dim; ++c) d += static_cast<double>(qi[c]) * kj[c];
          p[j] = d * scale;
          mx = std::fmax(mx, p[j]);
        }
        double sum = 0.0;
        for (int j = 0; j < seq_len; ++j) sum += (p[j] = std::exp(p[j] - mx));
        float* o = out + (r0 + i) * E + h * head_dim;
        for (int c = 0; c < head_dim; ++c) {
          double acc = 0.0;
          for (int j = 0; j < seq_len; ++j) acc += p[j] * v[(r0 + j) * E + h * head_dim + c];
          o[c] = static_cast<float>(acc / sum);
        }
      }
    }
  }
}

}  // namespace akvq::ops::ref
