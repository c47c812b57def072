// Scalar references for the quantized formats: dequantization, activation quantization, block
// dot products and the two reference matmuls.
// Compiled without floating-point contraction so that dequantize_row rounds exactly like numpy
// (gguf.quants.dequantize): every product and sum is rounded to f32 separately.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <akvq/error.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "ops/ref.h"

namespace akvq::ops::ref {

namespace {

void check_blocks(DType t, int64_t n, const char* what) {
  const DTypeInfo& info = dtype_info(t);
  if (n < 0 || n % info.block != 0) {
    throw InvalidArgument(std::string("[ops] ") + what + ": " + std::to_string(n) +
                          " values is not a multiple of the " + info.name + " block size " +
                          std::to_string(info.block));
  }
}

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((b[i].qs[j] & 15) - 8);
      y[j + 16] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(b[i].qs[j] & 15) + m;
      y[j + 16] = d * static_cast<float>(b[i].qs[j] >> 4) + m;
    }
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(b[i].qs[j]);
  }
}

// Q4_K and Q5_K (the same scales and mins; Q5_K adds a fifth bit per value from qh).
template <class Block>
void dequant_q4_q5_k(const Block* b, float* y, int64_t nb) {
  constexpr bool kQ5 = sizeof(Block) == sizeof(BlockQ5_K);
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
    for (int k = 0; k < 4; ++k) {
      int sc0, mn0, sc1, mn1;
      q4k_scale_min(b[i].scales, 2 * k, sc0, mn0);
      q4k_scale_min(b[i].scales, 2 * k + 1, sc1, mn1);
      const float d0 = d * static_cast<float>(sc0), m0 = dmin * static_cast<float>(mn0);
      const float d1 = d * static_cast<float>(sc1), m1 = dmin * static_cast<float>(mn1);
      const uint8_t* q = b[i].qs + 32 * k;
      for (int l = 0; l < 32; ++l) {
        int h0 = 0, h1 = 0;
        if constexpr (kQ5) h0 = (b[i].qh[l] >> (2 * k)) & 1, h1 = (b[i].qh[l] >> (2 * k + 1)) & 1;
        y[64 * k + l] = d0 * static_cast<float>((q[l] & 15) + 16 * h0) - m0;
        y[64 * k + 32 + l] = d1 * static_cast<float>((q[l] >> 4) + 16 * h1) - m1;
      }
    }
  }
}

inline int q6k_value(const BlockQ6_K& b, int i) {  // 0..63
  const int h = i / 128, k = (i % 128) / 32, l = i % 32;
  const int lo = (b.ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
  const int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
  return lo | (hi << 4);
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = fp16_to_f32(b[i].d);
    for (int v = 0; v < kQKK; ++v) {
      const float ds = d * static_cast<float>(b[i].scales[v / 16]);
      y[v] = ds * static_cast<float>(q6k_value(b[i], v) - 32);
    }
  }
}

inline uint32_t q5_high_bits(const uint8_t qh[4]) {
  return uint32_t{qh[0]} | (uint32_t{qh[1]} << 8) | (uint32_t{qh[2]} << 16) | (uint32_t{qh[3]} << 24);
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    const uint32_t h = q5_high_bits(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(static_cast<int>((b[i].qs[j] & 15) | (((h >> j) & 1) << 4)) - 16);
      y[j + 16] = d * static_cast<float>(static_cast<int>((b[i].qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) - 16);
    }
  }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);
    const uint32_t h = q5_high_bits(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((b[i].qs[j] & 15) | (((h >> j) & 1) << 4)) + m;
      y[j + 16] = d * static_cast<float>((b[i].qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) + m;
    }
  }
}

void dequant_iq4_nl(const BlockIQ4_NL* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kIQ4NLLevels[b[i].qs[j] & 15]);
      y[j + 16] = d * static_cast<float>(kIQ4NLLevels[b[i].qs[j] >> 4]);
    }
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* out, int64_t n) {
  check_blocks(t, n, "dequantize_row");
  switch (t) {
    case DType::F32: std::memcpy(out, src, static_cast<size_t>(n) * 4); return;
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::Q4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(src), out, n / kQK); return;
    case DType::Q4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(src), out, n / kQK); return;
    case DType::Q8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(src), out, n / kQK); return;
    case DType::Q4_K: dequant_q4_q5_k(static_cast<const BlockQ4_K*>(src), out, n / kQKK); return;
    case DType::Q6_K: dequant_q6_k(static_cast<const BlockQ6_K*>(src), out, n / kQKK); return;
    case DType::Q5_0: dequant_q5_0(static_cast<const BlockQ5_0*>(src), out, n / kQK); return;
    case DType::Q5_1: dequant_q5_1(static_cast<const BlockQ5_1*>(src), out, n / kQK); return;
    case DType::Q5_K: dequant_q4_q5_k(static_cast<const BlockQ5_K*>(src), out, n / kQKK); return;
    case DType::IQ4_NL: dequant_iq4_nl(static_cast<const BlockIQ4_NL*>(src), out, n / kQK); return;
  }
  throw InvalidArgument(std::string("[ops] dequantize_row: unsupported type ") + dtype_name(static_cast<uint32_t>(t)));
}

namespace {

// One block of n values to integers: d = amax / qmax, q = clamp(round-half-even(x * (1/d)), ±qmax)
// (qmax = kActQ16Max, or kActQ8Max for 8-bit activations). Returns d (0 for a block with
// amax < kActTiny). The clamp never binds for finite x (|x * (1/d)| <= qmax + a few ulps).
float quantize_block16(const float* x, int n, int16_t* q, int qmax) {
  float amax = 0.0f;
  for (int j = 0; j < n; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float fq = static_cast<float>(qmax);
  const float d = amax >= kActTiny ? amax / fq : 0.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < n; ++j) {
    const float v = std::fmin(std::fmax(std::nearbyint(x[j] * id), -fq), fq);
    q[j] = static_cast<int16_t>(v);
  }
  return d;
}

}  // namespace

void quantize_row_q16(const float* x, void* out_row, int64_t n, int qmax) {
  int16_t* qs = static_cast<int16_t*>(out_row);
  float* d = const_cast<float*>(act_q16_d(out_row, n));
  float* s = d + n / kQK;
  for (int64_t b = 0; b < n / kQK; ++b) {
    d[b] = quantize_block16(x + b * kQK, kQK, qs + b * kQK, qmax);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += qs[b * kQK + j];
    s[b] = d[b] * static_cast<float>(sum);
  }
}

void quantize_row_q16k(const float* x, ActQ16K* out, int64_t n, int qmax) {
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    std::memset(&out[b], 0, sizeof(ActQ16K));
    out[b].d = quantize_block16(x, kQKK, out[b].qs, qmax);
    for (int j = 0; j < 8; ++j) {
      int32_t sum = 0;
      for (int l = 0; l < 32; ++l) sum += out[b].qs[32 * j + l];
      out[b].sums[j] = sum;
    }
  }
}

ActKind act_kind(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return ActKind::F32;
    case DType::Q4_K:
    case DType::Q6_K: return ActKind::Q16K;
    default: return ActKind::Q16;
  }
}

// Integer bounds: Q4_0/Q4_1 block sums |sumi| <= 32*15*32767 < 2^24; Q8_0 <= 32*128*32767 < 2^28.
// The K-quant super-block sums can exceed 2^31 (Q6_K: 256*32*128*32767), hence int64.
float vec_dot(DType t, const void* w_row, const void* x_act, int64_t n) {
  float acc = 0.0f;
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: {
      std::vector<float> w(static_cast<size_t>(n));
      dequantize_row(t, w_row, w.data(), n);
      const float* x = static_cast<const float*>(x_act);
      for (int64_t i = 0; i < n; ++i) acc += w[i] * x[i];
      return acc;
    }
    case DType::Q4_0:
    case DType::Q4_1: {
      const int16_t* xq = act_q16_qs(x_act);
      const float* xd = act_q16_d(x_act, n);
      const float* xs = act_q16_s(x_act, n);
      const bool q41 = t == DType::Q4_1;
      const uint8_t* p = static_cast<const uint8_t*>(w_row);
      for (int64_t b = 0; b < n / kQK; ++b, xq += kQK) {
        float d, m;
        const uint8_t* qs;
        if (q41) {
          const BlockQ4_1* wb = reinterpret_cast<const BlockQ4_1*>(p) + b;
          d = fp16_to_f32(wb->d), m = fp16_to_f32(wb->m), qs = wb->qs;
        } else {
          const BlockQ4_0* wb = reinterpret_cast<const BlockQ4_0*>(p) + b;
          d = fp16_to_f32(wb->d), m = -8.0f * d, qs = wb->qs;
        }
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) sumi += (qs[j] & 15) * xq[j] + (qs[j] >> 4) * xq[j + 16];
        acc += static_cast<float>(sumi) * (d * xd[b]) + m * xs[b];
      }
      return acc;
    }
    case DType::Q8_0: {
      const int16_t* xq = act_q16_qs(x_act);
      const float* xd = act_q16_d(x_act, n);
      const BlockQ8_0* wb = static_cast<const BlockQ8_0*>(w_row);
      for (int64_t b = 0; b < n / kQK; ++b, xq += kQK) {
        int32_t sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += wb[b].qs[j] * xq[j];
        acc += static_cast<float>(sumi) * (fp16_to_f32(wb[b].d) * xd[b]);
      }
      return acc;
    }
    case DType::Q4_K: {
      const ActQ16K* xa = static_cast<const ActQ16K*>(x_act);
      const BlockQ4_K* wb = static_cast<const BlockQ4_K*>(w_row);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        int64_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
          int sc, mn;
          q4k_scale_min(wb[b].scales, j, sc, mn);
          const uint8_t* q = wb[b].qs + 32 * (j / 2);
          const int shift = 4 * (j % 2);
          int64_t s = 0;
          for (int l = 0; l < 32; ++l) s += ((q[l] >> shift) & 15) * xa[b].qs[32 * j + l];
          sumi += sc * s;
          summ += static_cast<int64_t>(mn) * xa[b].sums[j];
        }
        const float dx = xa[b].d;
        acc += fp16_to_f32(wb[b].d) * dx * static_cast<float>(sumi) -
               fp16_to_f32(wb[b].dmin) * dx * static_cast<float>(summ);
      }
      return acc;
    }
    case DType::Q6_K: {
      const ActQ16K* xa = static_cast<const ActQ16K*>(x_act);
      const BlockQ6_K* wb = static_cast<const BlockQ6_K*>(w_row);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        int64_t sumi = 0;
        for (int g = 0; g < 16; ++g) {
          int64_t s = 0;
          for (int l = 0; l < 16; ++l) s += (q6k_value(wb[b], 16 * g + l) - 32) * xa[b].qs[16 * g + l];
          sumi += wb[b].scales[g] * s;
        }
        acc += fp16_to_f32(wb[b].d) * xa[b].d * static_cast<float>(sumi);
      }
      return acc;
    }
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q5_K:
    case DType::IQ4_NL: break;  // load-only: converted at load (core/dtype.h), never computed with
  }
  throw InvalidArgument(std::string("[ops] vec_dot: unsupported type ") + dtype_name(static_cast<uint32_t>(t)));
}

void matmul_quant(const TensorView& w, const float* x, int64_t n_tok, float* y) {
  const int64_t n_in = w.ne[0], n_out = w.rows();
  check_blocks(w.type, n_in, "matmul_quant");
  const ActKind kind = act_kind(w.type);
  const int qmax = act_qmax(w);
  for (int64_t t = 0; t < n_tok; ++t) {
    const float* xt = x + t * n_in;
    std::vector<uint8_t> q16;
    std::vector<ActQ16K> q16k;
    const void* xa = xt;
    if (kind == ActKind::Q16) {
      q16.resize(static_cast<size_t>(act_q16_row_bytes(n_in)));
      quantize_row_q16(xt, q16.data(), n_in, qmax);
      xa = q16.data();
    } else if (kind == ActKind::Q16K) {
      q16k.resize(static_cast<size_t>(n_in / kQKK));
      quantize_row_q16k(xt, q16k.data(), n_in, qmax);
      xa = q16k.data();
    }
    for (int64_t r = 0; r < n_out; ++r) y[t * n_out + r] = vec_dot(w.type, w.row(r), xa, n_in);
  }
}

void matmul_f32(const TensorView& w, const float* x, int64_t n_tok, float* y) {
  const int64_t n_in = w.ne[0], n_out = w.rows();
  check_blocks(w.type, n_in, "matmul_f32");
  std::vector<float> row(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_out; ++r) {
    dequantize_row(w.type, w.row(r), row.data(), n_in);
    for (int64_t t = 0; t < n_tok; ++t) {
      double acc = 0.0;
      for (int64_t i = 0; i < n_in; ++i) acc += static_cast<double>(row[i]) * x[t * n_in + i];
      y[t * n_out + r] = static_cast<float>(acc);
    }
  }
}

void get_rows(const TensorView& w, const int32_t* ids, int64_t n, float* out) {
  const int64_t n_rows = w.rows(), ne0 = w.ne[0];
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= n_rows) {
      throw InvalidArgument("[ops] get_rows '" + w.name + "': id " + std::to_string(ids[i]) + " outside [0, " +
                            std::to_string(n_rows) + ")");
    }
    dequantize_row(w.type, w.row(ids[i]), out + i * ne0, ne0);
  }
}

}  // namespace akvq::ops::ref
