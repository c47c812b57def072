// Element-wise ops of ops.h: AVX2 (+FMA, F16C) where compiled in, scalar reference otherwise
// (and for the tails that do not fill a vector).
#include <akvq/error.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "cpu/simd.h"
#include "ops/ops.h"
#include "ops/ref.h"

namespace akvq::ops {

void rms_norm(const float* x, const float* w, int64_t n_tok, int64_t n, float eps, float* y) {
#ifdef AKVQ_AVX2
  for (int64_t t = 0; t < n_tok; ++t, x += n, y += n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
      a0 = _mm256_fmadd_ps(v0, v0, a0);
      a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    float ss = cpu::hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) ss += x[i] * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(ss) / n + eps));
    const __m256 sv = _mm256_set1_ps(scale);
    i = 0;
    if (w) {
      for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
      }
      for (; i < n; ++i) y[i] = x[i] * scale * w[i];
    } else {
      for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
      for (; i < n; ++i) y[i] = x[i] * scale;
    }
  }
#else
  ref::rms_norm(x, w, n_tok, n, eps, y);
#endif
}

namespace {

// cos/sin of pos * freq[i] for i < n_rot/2, computed in double: cs[2i] = cos, cs[2i+1] = sin.
void rope_table(int32_t pos, const std::vector<double>& freq, float* cs) {
  for (size_t i = 0; i < freq.size(); ++i) {
    const double a = static_cast<double>(pos) * freq[i];
    cs[2 * i] = static_cast<float>(std::cos(a));
    cs[2 * i + 1] = static_cast<float>(std::sin(a));
  }
}

void rope_head(float* v, const float* cs, int half, RopeMode mode) {
  int i = 0;
  if (mode == RopeMode::AdjacentPairs) {
#ifdef AKVQ_AVX2
    // v = [a0 b0 a1 b1 ...], cs = [c0 s0 c1 s1 ...]: a' = a c - b s, b' = b c + a s.
    for (; i + 4 <= half; i += 4) {
      const __m256 x = _mm256_loadu_ps(v + 2 * i);
      const __m256 t = _mm256_loadu_ps(cs + 2 * i);
      const __m256 c = _mm256_moveldup_ps(t), s = _mm256_movehdup_ps(t);
      const __m256 xs = _mm256_permute_ps(x, 0xb1);  // [b0 a0 b1 a1 ...]
      _mm256_storeu_ps(v + 2 * i, _mm256_fmaddsub_ps(x, c, _mm256_mul_ps(xs, s)));
    }
#endif
    for (; i < half; ++i) {
      const float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[2 * i], x1 = v[2 * i + 1];
      v[2 * i] = x0 * c - x1 * s;
      v[2 * i + 1] = x0 * s + x1 * c;
    }
  } else {
    for (; i < half; ++i) {  // auto-vectorised; cs is interleaved so keep it simple
      const float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[i], x1 = v[i + half];
      v[i] = x0 * c - x1 * s;
      v[i + half] = x0 * s + x1 * c;
    }
  }
}

}  // namespace

void rope(float* x, int64_t n_tok, int n_head, int head_dim, int n_rot, const int32_t* pos,
          float theta, RopeMode mode, const RopeScaling& scaling) {
  if (n_rot <= 0 || n_rot % 2 != 0 || n_rot > head_dim) {
    throw InvalidArgument("[ops] rope: n_rot " + std::to_string(n_rot) +
                          " must be even and in (0, head_dim=" + std::to_string(head_dim) + "]");
  }
  const int half = n_rot / 2;
  // Per calling thread, cache the frequencies and the tables of the last call's positions: every
  // layer applies rope to q and k at the same positions (a decode step, a batched step's
  // sequences, a prompt chunk), so the cos/sin tables are computed once per step, not 2 x n_layer
  // times (a batched step of 8 sequences spent ~1% of its time in sincos).
  thread_local std::vector<double> freq;
  thread_local float freq_theta = 0.0f;
  thread_local int freq_rot = 0;
  thread_local float freq_scale = 1.0f;
  thread_local std::vector<float> freq_factors;  // [half] the factors the frequencies hold, or empty
  thread_local std::vector<int32_t> tab_pos;  // [n_tok] positions of the tables
  thread_local std::vector<float> tab;        // [n_tok, n_rot] (cos, sin) pairs
  const bool same_factors = scaling.freq_factors
                                ? freq_factors.size() == static_cast<size_t>(half) &&
                                      std::equal(freq_factors.begin(), freq_factors.end(), scaling.freq_factors)
                                : freq_factors.empty();
  if (freq_theta != theta || freq_rot != n_rot || freq_scale != scaling.freq_scale || !same_factors) {
    freq.resize(static_cast<size_t>(half));
    for (int i = 0; i < half; ++i) {
      freq[i] = scaling.freq_scale * std::pow(static_cast<double>(theta), -2.0 * i / n_rot);
      if (scaling.freq_factors) freq[i] /= scaling.freq_factors[i];
    }
    freq_theta = theta;
    freq_rot = n_rot;
    freq_scale = scaling.freq_scale;
    if (scaling.freq_factors) {
      freq_factors.assign(scaling.freq_factors, scaling.freq_factors + half);
    } else {
      freq_factors.clear();
    }
    tab_pos.clear();
  }
  if (tab_pos.size() != static_cast<size_t>(n_tok) || !std::equal(tab_pos.begin(), tab_pos.end(), pos)) {
    tab_pos.assign(pos, pos + n_tok);
    tab.resize(static_cast<size_t>(n_tok) * n_rot);
    for (int64_t t = 0; t < n_tok; ++t) {
      if (t > 0 && pos[t] == pos[t - 1]) {
        std::copy(tab.begin() + (t - 1) * n_rot, tab.begin() + t * n_rot, tab.begin() + t * n_rot);
      } else {
        rope_table(pos[t], freq, tab.data() + t * n_rot);
      }
    }
  }
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int h = 0; h < n_head; ++h) rope_head(x + (t * n_head + h) * head_dim, tab.data() + t * n_rot, half, mode);
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
#ifdef AKVQ_AVX2
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = cpu::exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 gu = _mm256_mul_ps(g, _mm256_loadu_ps(up + i));
    _mm256_storeu_ps(out + i, _mm256_div_ps(gu, _mm256_add_ps(one, e)));
  }
#endif
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add_inplace(float* x, const float* y, int64_t n) {
  int64_t i = 0;
#ifdef AKVQ_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) x[i] += y[i];
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
#ifdef AKVQ_AVX2
  int64_t i = 0;
  __m256 mv = _mm256_set1_ps(x[0]);
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
  float mx = cpu::hmax(mv);
  for (; i < n; ++i) mx = std::fmax(mx, x[i]);
  const __m256 m8 = _mm256_set1_ps(mx);
  __m256 sv = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = cpu::exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8));
    _mm256_storeu_ps(x + i, e);
    sv = _mm256_add_ps(sv, e);
  }
  float sum = cpu::hsum(sv);
  for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
  const float inv = 1.0f / sum;
  const __m256 iv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
  for (; i < n; ++i) x[i] *= inv;
#else
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::fmax(mx, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
#endif
}

float dot_f16(const float* x, const uint16_t* y, int64_t n) {
  int64_t i = 0;
  float acc = 0.0f;
#ifdef AKVQ_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), cpu::load_f16x8(y + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), cpu::load_f16x8(y + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), cpu::load_f16x8(y + i), a0);
  acc = cpu::hsum(_mm256_add_ps(a0, a1));
#endif
  for (; i < n; ++i) acc += x[i] * fp16_to_f32(y[i]);
  return acc;
}

void axpy_f16(float a, const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
#ifdef AKVQ_AVX2
  const __m256 av = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, cpu::load_f16x8(x + i), _mm256_loadu_ps(y + i)));
  }
#endif
  for (; i < n; ++i) y[i] += a * fp16_to_f32(x[i]);
}

void f32_to_f16_row(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
#ifdef AKVQ_AVX2
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
#endif
  for (; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

}  // namespace akvq::ops
