// Q16X activation rows (ops/qblocks.h) for the AVX-512 kernels (on an AVX-512 CPU the same bytes
// come from act_quant_q16x_avx512.cpp; this is the portable definition): the row is quantized to
// Q16 by quantize_row_q16 (the same integers and scales as every other path) and rearranged into
// byte-split groups of 4 blocks; ActQ8K and ActQ16XK rows (Q4_K weights) are the super-blocks
// of quantize_row_q16k rearranged. Plain C++: it is O(n) per token, next to O(n * n_out) of the
// matmul.
#include <akvq/error.h>

#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "cpu/act_q16x_rows.h"
#include "cpu/isa.h"
#include "cpu/qgemm.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

namespace {

// The n / 256 ActQ16K super-blocks of x[n] (quantize_row_q16k) in a scratch of the calling thread,
// valid until its next call: the integers the K-quant rows below rearrange.
const ops::ActQ16K* q16k_blocks(const float* x, int64_t n, int qmax) {
  const size_t nb = static_cast<size_t>(n / ops::kQKK);
  thread_local std::vector<ops::ActQ16K> tmp;
  if (tmp.size() < nb) tmp.resize(nb);
  quantize_row_q16k(x, tmp.data(), n, qmax);
  return tmp.data();
}

}  // namespace

void quantize_row_q8k(const float* x, void* out_row, int64_t n, int qmax) {
  if (qmax > 127) throw InvalidArgument("[ops] ActQ8K rows (Q4_K weights) hold 8-bit levels only");
  const int64_t nb = n / ops::kQKK;
  const ops::ActQ16K* tmp = q16k_blocks(x, n, qmax);
  ops::ActQ8K* out = static_cast<ops::ActQ8K*>(out_row);
  for (int64_t b = 0; b < nb; ++b) {
    const ops::ActQ16K& a = tmp[b];
    ops::ActQ8K& o = out[b];
    std::memset(&o, 0, sizeof(o));
    o.d = a.d;
    for (int j = 0; j < 8; ++j) o.ms[j] = a.d * static_cast<float>(a.sums[j]);
    for (int c = 0; c < 4; ++c) {
      const int m = c / 2, h = c % 2;
      for (int l = 0; l < 32; ++l) {
        o.qs[64 * c + l] = static_cast<int8_t>(a.qs[32 * (4 * m + h) + l]);
        o.qs[64 * c + 32 + l] = static_cast<int8_t>(a.qs[32 * (4 * m + 2 + h) + l]);
      }
    }
  }
}

void quantize_row_q16xk(const float* x, void* out_row, int64_t n, int qmax) {
  const int64_t nb = n / ops::kQKK;
  const ops::ActQ16K* tmp = q16k_blocks(x, n, qmax);
  const bool split = qmax > 127;  // 8-bit levels: h = q, l = 0
  ops::ActQ16XK* out = static_cast<ops::ActQ16XK*>(out_row);
  for (int64_t b = 0; b < nb; ++b) {
    const ops::ActQ16K& a = tmp[b];
    ops::ActQ16XK& o = out[b];
    o.d = a.d;
    for (float& p : o.pad) p = 0.0f;
    for (int j = 0; j < 8; ++j) o.sums[j] = static_cast<float>(a.sums[j]);
    for (int i = 0; i < 16; ++i) {
      int32_t sum = 0;
      for (int v = 0; v < 16; ++v) sum += a.qs[16 * i + v];
      o.off16[i] = -32 * sum;
    }
    if (split) {
      for (int i = 0; i < ops::kQKK; ++i) {
        o.h[i] = static_cast<int8_t>(a.qs[i] >> 8);  // arithmetic shift: floor(q / 256)
        o.l[i] = static_cast<uint8_t>(a.qs[i] & 255);
      }
    } else {
      for (int i = 0; i < ops::kQKK; ++i) o.h[i] = static_cast<int8_t>(a.qs[i]), o.l[i] = 0;
    }
  }
}

void quantize_row_q16x(const float* x, void* out_row, int64_t n, DType weight, int qmax) {
#if defined(AKVQ_HAVE_AVX512_KERNELS)
  if (active_isa() == Isa::Avx512) return quantize_row_q16x_avx512(x, out_row, n, weight, qmax);
#endif
  const bool offset_high = weight == DType::Q8_0;
  thread_local std::vector<uint8_t> tmp;
  const size_t need = static_cast<size_t>(ops::act_q16_row_bytes(n));
  if (tmp.size() < need) tmp.resize(need);
  quantize_row_q16(x, tmp.data(), n, qmax);
  const bool split = qmax > 127;  // 8-bit levels: h = q, l = 0
  const int16_t* q = ops::act_q16_qs(tmp.data());
  const float* d = ops::act_q16_d(tmp.data(), n);
  write_q16x_row(static_cast<uint8_t*>(out_row), n, weight,
                 [&](int64_t b, uint8_t* h_lo, uint8_t* h_hi, uint8_t* l_lo, uint8_t* l_hi) {
                   // branch-free loops per case so that they vectorize (this runs per token and matmul)
                   const int16_t* qb = q + b * ops::kQK;
                   int32_t sum = 0;
                   for (int i = 0; i < ops::kQK; ++i) sum += qb[i];
                   for (int half = 0; half < 2; ++half) {
                     const int16_t* src = qb + 16 * half;
                     uint8_t* hd = half ? h_hi : h_lo;
                     uint8_t* ld = half ? l_hi : l_lo;
                     if (split) {
                       for (int i = 0; i < 16; ++i) {
                         const int hi = src[i] >> 8;  // arithmetic shift: floor(v / 256)
                         hd[i] = static_cast<uint8_t>(offset_high ? hi + 128 : hi);
                         ld[i] = static_cast<uint8_t>(src[i] & 255);
                       }
                     } else if (offset_high) {
                       for (int i = 0; i < 16; ++i) hd[i] = static_cast<uint8_t>(src[i] + 128);
                     } else {
                       for (int i = 0; i < 16; ++i) hd[i] = static_cast<uint8_t>(src[i]);
                     }
                   }
                   return Q16XBlock{d[b], sum};
                 });
}

}  // namespace akvq::cpu
