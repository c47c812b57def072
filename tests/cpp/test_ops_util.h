// Helpers shared by the op tests: random weights of every type, tensor views, error bounds.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/tensor.h"
#include "cpu/qgemm.h"
#include "ops/qblocks.h"
#include "ops/ref.h"

namespace akvq::test {

// The SIMD activation quantizer cpu::quantize_row_q16k writes exactly the reference's blocks for
// x[n] (n a multiple of 256).
inline void expect_q16k_matches_reference(const float* x, int64_t n) {
  std::vector<ops::ActQ16K> ka(n / 256), kb(n / 256);
  cpu::quantize_row_q16k(x, ka.data(), n);
  ops::ref::quantize_row_q16k(x, kb.data(), n);
  for (int64_t i = 0; i < n / 256; ++i) {
    EXPECT_EQ(ka[i].d, kb[i].d);
    for (int j = 0; j < 8; ++j) EXPECT_EQ(ka[i].sums[j], kb[i].sums[j]);
    for (int j = 0; j < 256; ++j) ASSERT_EQ(ka[i].qs[j], kb[i].qs[j]) << i << " " << j;
  }
}

// Random raw rows of type t: n_rows rows of n_in values. Quantized blocks get random payload
// bytes and random but finite fp16 scales (sized so that values are O(1)).
inline std::vector<uint8_t> random_weights(DType t, int64_t n_rows, int64_t n_in, std::mt19937& rng) {
  const size_t rb = row_bytes(t, n_in);
  std::vector<uint8_t> raw(rb * n_rows);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : raw) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto put16 = [&](uint8_t* p, uint16_t v) { p[0] = v & 0xff, p[1] = v >> 8; };
  const DTypeInfo& info = dtype_info(t);
  const int64_t nblocks = n_rows * (n_in / info.block);
  for (int64_t i = 0; i < nblocks; ++i) {
    uint8_t* b = raw.data() + i * info.block_bytes;
    switch (t) {
      case DType::F32: {
        const float f = u(rng) * 2.0f;
        std::memcpy(b, &f, 4);
        break;
      }
      case DType::F16: put16(b, f32_to_fp16(u(rng) * 2.0f)); break;
      case DType::BF16: {
        const float f = u(rng) * 2.0f;
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        put16(b, static_cast<uint16_t>(bits >> 16));
        break;
      }
      case DType::Q4_0: put16(b, f32_to_fp16(u(rng) * 0.3f)); break;
      case DType::Q4_1:
        put16(b, f32_to_fp16(std::fabs(u(rng)) * 0.3f));
        put16(b + 2, f32_to_fp16(u(rng) * 2.0f));
        break;
      case DType::Q8_0: put16(b, f32_to_fp16(u(rng) * 0.02f)); break;
      case DType::Q4_K:
        put16(b, f32_to_fp16(std::fabs(u(rng)) * 0.01f));
        put16(b + 2, f32_to_fp16(std::fabs(u(rng)) * 0.02f));
        break;
      case DType::Q6_K: put16(b + 208, f32_to_fp16(u(rng) * 0.001f)); break;
      case DType::Q5_0:
      case DType::IQ4_NL: put16(b, f32_to_fp16(u(rng) * 0.02f)); break;
      case DType::Q5_1:
        put16(b, f32_to_fp16(std::fabs(u(rng)) * 0.2f));
        put16(b + 2, f32_to_fp16(u(rng) * 2.0f));
        break;
      case DType::Q5_K:
        put16(b, f32_to_fp16(std::fabs(u(rng)) * 0.01f));
        put16(b + 2, f32_to_fp16(std::fabs(u(rng)) * 0.02f));
        break;
    }
  }
  return raw;
}

inline TensorView view(DType t, const std::vector<uint8_t>& raw, int64_t n_in, int64_t n_rows) {
  TensorView w;
  w.name = "test";
  w.type = t;
  w.n_dims = 2;
  w.ne[0] = n_in;
  w.ne[1] = n_rows;
  w.data = raw.data();
  w.nbytes = raw.size();
  return w;
}

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& f : v) f = nd(rng);
  return v;
}

inline std::vector<float> dequant_all(const TensorView& w) {
  std::vector<float> out(static_cast<size_t>(w.ne[0] * w.rows()));
  for (int64_t r = 0; r < w.rows(); ++r) ops::ref::dequantize_row(w.type, w.row(r), out.data() + r * w.ne[0], w.ne[0]);
  return out;
}

// sum_i |W[r,i]| |x[t,i]| : the scale of the rounding error of an f32 dot product.
inline double abs_dot(const float* w, const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(w[i]) * x[i]);
  return s;
}

// Worst-case effect of rounding x to 16 bits per block: |x_i - q_i d_b| <= d_b * (1/2 + 0.004)
// with d_b = amax_b / 32767 (x * fl(1/d_b) is within 2 ulp of x / d_b <= 32767, i.e. 0.004),
// so |err| <= sum_b (sum_{i in b} |w_i|) * amax_b / 65534 * 1.01.
inline double act_quant_bound(const float* w, const float* x, int64_t n, int block) {
  double bound = 0.0;
  for (int64_t b = 0; b < n / block; ++b) {
    double aw = 0.0, amax = 0.0;
    for (int i = 0; i < block; ++i) {
      aw += std::fabs(w[b * block + i]);
      amax = std::fmax(amax, std::fabs(x[b * block + i]));
    }
    bound += aw * amax / 65534.0 * 1.01;
  }
  return bound;
}

}  // namespace akvq::test
