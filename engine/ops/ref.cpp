// Scalar references for the element-wise ops (norms, rope, activations, fp16 helpers).
// Accumulations use double so the reference is more accurate than the SIMD code under test.
#include <akvq/error.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "ops/ref.h"

namespace akvq::ops::ref {

void rms_norm(const float* x, const float* w, int64_t n_tok, int64_t n, float eps, float* y) {
  for (int64_t t = 0; t < n_tok; ++t, x += n, y += n) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
  }
}

void rope(float* x, int64_t n_tok, int n_head, int head_dim, int n_rot, const int32_t* pos,
          float theta, RopeMode mode, const RopeScaling& scaling) {
  if (n_rot <= 0 || n_rot % 2 != 0 || n_rot > head_dim) {
    throw InvalidArgument("[ops] rope: n_rot " + std::to_string(n_rot) +
                          " must be even and in (0, head_dim=" + std::to_string(head_dim) + "]");
  }
  const int half = n_rot / 2;
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int h = 0; h < n_head; ++h) {
      float* v = x + (t * n_head + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        double freq = scaling.freq_scale * std::pow(static_cast<double>(theta), -2.0 * i / n_rot);
        if (scaling.freq_factors) freq /= scaling.freq_factors[i];
        const double a = static_cast<double>(pos[t]) * freq;
        const float c = static_cast<float>(std::cos(a)), s = static_cast<float>(std::sin(a));
        const int i0 = mode == RopeMode::AdjacentPairs ? 2 * i : i;
        const int i1 = mode == RopeMode::AdjacentPairs ? 2 * i + 1 : i + half;
        const float x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * c - x1 * s;
        v[i1] = x0 * s + x1 * c;
      }
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::fmax(mx, x[i]);
  double sum = 0.0;
  std::vector<double> e(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) sum += (e[i] = std::exp(static_cast<double>(x[i]) - mx));
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(e[i] / sum);
}

float dot_f16(const float* x, const uint16_t* y, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]) * fp16_to_f32(y[i]);
  return static_cast<float>(acc);
}

void axpy_f16(float a, const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * fp16_to_f32(x[i]);
}

void f32_to_f16_row(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

}  // namespace akvq::ops::ref
