// The K-quant tile loop of the NEON kernels (Q4_K, Q6_K x ActQ16K, 256-value super-blocks) and
// the block facts; the AVX2 (qgemm_kquant.cpp) and AVX-512 tiles have loops of their own. Per super-block, each of the R rows is
// unpacked once into 256 int16 weights with the sub-block scales folded in, kept in an L1
// scratch, and the T tokens are multiplied with it. The ISA file
// (qgemm_kquant_neon.cpp) provides
//   V (vector traits): Acc (f32 partial sums of one row x one token), zero(), hsum(Acc),
//                      dot<K>(u, x, acc): acc += d * dx * (u.wq . x->qs) over one super-block
//   K (weight type, derived from Q4_K / Q6_K below): unpack(block, u), offset(u, x) (the min term)
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "cpu/qgemm.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu::kquant {

// One unpacked super-block of one row.
struct Unpacked {
  alignas(32) int16_t wq[256];  // [256] weights times their sub-block scale
  int32_t mn[8];                // [8] Q4_K sub-block mins
  float d, dmin;
};

struct Q4_K {
  using Block = ops::BlockQ4_K;
  static constexpr DType kType = DType::Q4_K;
  static constexpr int kHalves = 1;  // one int32 accumulation per super-block
};

struct Q6_K {
  using Block = ops::BlockQ6_K;
  static constexpr DType kType = DType::Q6_K;
  static constexpr int kHalves = 2;  // one int32 accumulation per half super-block
};

template <class V, class K>
struct Tiles {
  // 2 x 12: each row's unpack feeds 12 tokens (measured with AVX2 when it used this loop, ffn_gate
  // 2048 -> 5632, 64 tokens: 1.2x the 2 x 4 tile; NEON's speed not measured)
  static constexpr TileShape kShape = {2, 12, 2, 2, 12};

  // y[t * ldy + r] = row r . token t0 + t, rows w_stride bytes apart, n_in a multiple of 256.
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    using Block = typename K::Block;
    const int64_t nb = n_in / ops::kQKK;
    Unpacked u[R];
    typename V::Acc acc[R][T];
    float off[R][T];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) acc[r][t] = V::zero(), off[r][t] = 0.0f;
    }
    for (int64_t b = 0; b < nb; ++b) {
      for (int r = 0; r < R; ++r) K::unpack(reinterpret_cast<const Block*>(w + r * w_stride) + b, u[r]);
      for (int t = 0; t < T; ++t) {
        const ops::ActQ16K* xb = reinterpret_cast<const ops::ActQ16K*>(x.data + (t0 + t) * x.stride) + b;
        for (int r = 0; r < R; ++r) {
          V::template dot<K>(u[r], xb, acc[r][t]);
          off[r][t] += K::offset(u[r], xb);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) y[t * ldy + r] = V::hsum(acc[r][t]) + off[r][t];
    }
  }
};

}  // namespace akvq::cpu::kquant
