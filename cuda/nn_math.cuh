// Per-element arithmetic of the CUDA model ops (nn.cu), as host/device functions checked on the
// CPU against the engine's ops (engine/ops/ops.h) within float rounding.
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.cuh"

namespace akvq_cuda {

// Activations by transformers' names (engine ops::Activation order).
enum class Act : int { Gelu = 0, GeluTanh = 1, QuickGelu = 2, Silu = 3, Relu = 4 };

AKVQ_HD float act_value(Act a, float x) {
  switch (a) {
    case Act::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case Act::GeluTanh: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case Act::QuickGelu: return x / (1.0f + expf(-1.702f * x));
    case Act::Silu: return x / (1.0f + expf(-x));
    case Act::Relu: return x > 0.0f ? x : 0.0f;
  }
  return x;
}

// silu(gate) · up (SwiGLU).
AKVQ_HD float swiglu_value(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

// RoPE rotation of pair i (0 <= i < n_rot/2) at position pos: angle
// pos·freq_scale·theta^(−2i/n_rot)/factor in double, as the engine's reference (ops::RopeScaling).
AKVQ_HD void rope_cos_sin(int32_t pos, int i, int n_rot, float theta, float freq_scale, float factor, float& c,
                          float& s) {
  const double freq = freq_scale * pow(static_cast<double>(theta), -2.0 * i / n_rot) / factor;
  const double a = static_cast<double>(pos) * freq;
  c = static_cast<float>(cos(a));
  s = static_cast<float>(sin(a));
}

// Indices of pair i in a head: adjacent (2i, 2i+1; llama.cpp 'llama') or half split (i, i+n_rot/2;
// NeoX / Hugging Face).
AKVQ_HD void rope_pair(bool half_split, int i, int n_rot, int& i0, int& i1) {
  i0 = half_split ? i : 2 * i;
  i1 = half_split ? i + n_rot / 2 : 2 * i + 1;
}

}  // namespace akvq_cuda
