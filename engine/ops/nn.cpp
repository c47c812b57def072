// Row-wise vision-transformer ops of ops.h: LayerNorm, bias add, activations (GELU erf / tanh,
// quick GELU, SiLU, ReLU). Each row is computed by the same code whatever rows come with it
// (vector body over the columns, scalar tail for the last n % 8 columns), and rows are split over
// the thread pool.
#include <akvq/error.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "ops/ops.h"
#include "ops/vec.h"

namespace akvq::ops {

namespace {

using vec::load8;
using vec::splat8;
using vec::store8;
using vec::v8;

// Calls f(r0, r1) over row ranges covering [0, n_rows), on the pool when the work is large
// enough (cost: rough operations per row).
template <class F>
void for_rows(int64_t n_rows, int64_t cost, cpu::ThreadPool& pool, const F& f) {
  const int nth = pool.size();
  if (nth <= 1 || n_rows < 2 || n_rows * cost < (int64_t{1} << 15)) {
    f(int64_t{0}, n_rows);
    return;
  }
  const int n_tasks = static_cast<int>(std::min<int64_t>(n_rows, 4 * nth));
  pool.run(n_tasks, [&](int task, int) { f(task * n_rows / n_tasks, (task + 1) * n_rows / n_tasks); });
}

void check_rows(const char* op, const void* x, int64_t n_tok, int64_t n) {
  if (n_tok < 0 || n < 0) throw InvalidArgument(std::string("[ops] ") + op + ": negative size");
  if (n_tok > 0 && n > 0 && !x) throw InvalidArgument(std::string("[ops] ") + op + ": null data pointer");
}

void layer_norm_row(const float* x, const float* w, const float* b, int64_t n, float eps, float* y) {
  // mean
  v8 a = splat8(0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) a += load8(x + i);
  float sum = vec::hsum8(a);
  for (; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  // variance (two passes: no cancellation)
  const v8 mv = splat8(mean);
  a = splat8(0.0f);
  for (i = 0; i + 8 <= n; i += 8) {
    const v8 d = load8(x + i) - mv;
    a += d * d;
  }
  float ss = vec::hsum8(a);
  for (; i < n; ++i) ss += (x[i] - mean) * (x[i] - mean);
  const float rstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(ss) / static_cast<double>(n) + eps));
  const v8 rv = splat8(rstd);
  for (i = 0; i + 8 <= n; i += 8) {
    v8 t = (load8(x + i) - mv) * rv;
    if (w) t *= load8(w + i);
    if (b) t += load8(b + i);
    store8(y + i, t);
  }
  for (; i < n; ++i) {
    float t = (x[i] - mean) * rstd;
    if (w) t *= w[i];
    if (b) t += b[i];
    y[i] = t;
  }
}

// GELU through erfc: 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), with erfc(z) for
// z >= 0 from the Chebyshev fit t exp(-z^2 + P(t)), t = 1 / (1 + z / 2) (relative error < 1.2e-7
// for every z), and erfc(-z) = 2 - erfc(z).
inline float gelu1(float x) {
  const float z = std::fabs(x) * 0.70710678f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float e = t * vec::exp_clamped(p - z * z);  // erfc(|x| / sqrt 2)
  return 0.5f * x * (x >= 0.0f ? 2.0f - e : e);
}

inline float quick_gelu1(float x) {
  return x / (1.0f + vec::exp_clamped(-1.702f * x));
}

// 0.5 x (1 + tanh(u)) = x sigmoid(2 u), u = sqrt(2/pi) (x + 0.044715 x^3)
inline float gelu_tanh1(float x) {
  const float u2 = 1.5957691216f * (x + 0.044715f * x * x * x);
  return x / (1.0f + vec::exp_clamped(-u2));
}

inline float silu1(float x) {
  return x / (1.0f + vec::exp_clamped(-x));
}

inline float relu1(float x) {
  return x > 0.0f ? x : 0.0f;
}

template <float (*F)(float)>
void map_rows(const char* op, float* x, int64_t n_tok, int64_t n, int64_t cost, cpu::ThreadPool& pool) {
  check_rows(op, x, n_tok, n);
  for_rows(n_tok, cost * n, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* xr = x + r * n;
      for (int64_t i = 0; i < n; ++i) xr[i] = F(xr[i]);
    }
  });
}

struct ActivationName {
  Activation a;
  const char* name;
};
constexpr ActivationName kActivations[] = {{Activation::Gelu, "gelu"},
                                           {Activation::GeluTanh, "gelu_pytorch_tanh"},
                                           {Activation::QuickGelu, "quick_gelu"},
                                           {Activation::Silu, "silu"},
                                           {Activation::Relu, "relu"}};

}  // namespace

void layer_norm(const float* x, const float* w, const float* b, int64_t n_tok, int64_t n, float eps, float* y,
                cpu::ThreadPool& pool) {
  check_rows("layer_norm", x, n_tok, n);
  if (n_tok == 0 || n == 0) return;
  if (!y) throw InvalidArgument("[ops] layer_norm: null output pointer");
  for_rows(n_tok, 4 * n, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) layer_norm_row(x + r * n, w, b, n, eps, y + r * n);
  });
}

void add_bias(float* x, const float* b, int64_t n_tok, int64_t n, cpu::ThreadPool& pool) {
  check_rows("add_bias", x, n_tok, n);
  if (n_tok == 0 || n == 0) return;
  if (!b) throw InvalidArgument("[ops] add_bias: null bias pointer");
  for_rows(n_tok, n, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* xr = x + r * n;
      int64_t i = 0;
      for (; i + 8 <= n; i += 8) store8(xr + i, load8(xr + i) + load8(b + i));
      for (; i < n; ++i) xr[i] += b[i];
    }
  });
}

void gelu(float* x, int64_t n_tok, int64_t n, cpu::ThreadPool& pool) {
  map_rows<gelu1>("gelu", x, n_tok, n, 16, pool);
}

void quick_gelu(float* x, int64_t n_tok, int64_t n, cpu::ThreadPool& pool) {
  map_rows<quick_gelu1>("quick_gelu", x, n_tok, n, 8, pool);
}

void activation(Activation a, float* x, int64_t n_tok, int64_t n, cpu::ThreadPool& pool) {
  switch (a) {
    case Activation::Gelu: return gelu(x, n_tok, n, pool);
    case Activation::QuickGelu: return quick_gelu(x, n_tok, n, pool);
    case Activation::GeluTanh: return map_rows<gelu_tanh1>("gelu_pytorch_tanh", x, n_tok, n, 10, pool);
    case Activation::Silu: return map_rows<silu1>("silu", x, n_tok, n, 8, pool);
    case Activation::Relu: return map_rows<relu1>("relu", x, n_tok, n, 1, pool);
  }
}

bool activation_from_name(const char* name, Activation* out) {
  for (const ActivationName& e : kActivations) {
    if (std::string(name) == e.name) {
      *out = e.a;
      return true;
    }
  }
  return false;
}

const char* activation_name(Activation a) {
  for (const ActivationName& e : kActivations) {
    if (e.a == a) return e.name;
  }
  return "?";
}

}  // namespace akvq::ops
