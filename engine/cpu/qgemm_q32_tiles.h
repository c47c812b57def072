// ISA-independent part of the tiles for the 32-value block types Q4_0, Q4_1 and Q8_0 against Q16
// activation rows (ops/qblocks.h): the block facts and the family table (one-token tiles for
// T == 1, several-token tiles for 2 <= T <= 4). The ISA files (qgemm_q32.cpp: AVX2,
// qgemm_q32_neon.cpp: NEON) provide
//   V (the tiles of one ISA): t1<K, R> (one token, R rows), multi<K, R, T> (T tokens, R rows),
//                             over the Operands set up here
//   K (weight type, derived from Q4_0 / Q4_1 / Q8_0 below): unpack(block) into int16 lanes
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "cpu/qgemm.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu::q32 {

// kQsOff: byte offset of the quants in a block (all three types start with the fp16 d).
// kMinOff: byte offset of the fp16 offset multiplier (Q4_1: m; Q4_0: d, times kMinMul = -8);
// -1: no offset term. The offset term is kMinMul * mult * d_x * sum(q_x) = kMinMul * mult * s.
struct Q4_0 {
  static constexpr DType kType = DType::Q4_0;
  static constexpr int64_t kBytes = sizeof(ops::BlockQ4_0);
  static constexpr int kQsOff = 2;
  static constexpr int kMinOff = 0;
  static constexpr float kMinMul = -8.0f;
};

struct Q4_1 {
  static constexpr DType kType = DType::Q4_1;
  static constexpr int64_t kBytes = sizeof(ops::BlockQ4_1);
  static constexpr int kQsOff = 4;
  static constexpr int kMinOff = 2;
  static constexpr float kMinMul = 1.0f;
};

struct Q8_0 {
  static constexpr DType kType = DType::Q8_0;
  static constexpr int64_t kBytes = sizeof(ops::BlockQ8_0);
  static constexpr int kQsOff = 2;
  static constexpr int kMinOff = -1;
  static constexpr float kMinMul = 0.0f;
};

// The operands of one tile of R weight rows x T tokens, set up by Tiles::fn.
template <int R, int T>
struct Operands {
  int64_t nb = 0;               // blocks of 32 per row
  const uint8_t* wr[R] = {};    // [R] weight rows: nb blocks of K::kBytes
  const int16_t* xq[T] = {};    // [T][nb * 32] activation quants of tokens t0, t0 + 1, ...
  const float* xd = nullptr;    // T == 1: [nb] activation scales d of the token
  const float* xs = nullptr;    // T == 1: [nb] activation block sums s of the token
  const float* d_tr = nullptr;  // T >= 2: d of block b, token t at d_tr[b * tr_stride + t]
  const float* s_tr = nullptr;  // T >= 2: s, same layout (8 floats readable from any t)
  size_t tr_stride = 0;
};

// V: t1<K, R>(o, y) writes y[r] (one token); multi<K, R, T>(o, y, ldy) writes y[t * ldy + r].
template <class V, class K>
struct Tiles {
  static constexpr TileShape kShape = {4, 4, 4, 4, 4};

  // y[t * ldy + r] = row r . token t0 + t, rows w_stride bytes apart, n_in a multiple of 32.
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    Operands<R, T> o;
    o.nb = n_in / ops::kQK;
    for (int r = 0; r < R; ++r) o.wr[r] = w + r * w_stride;
    for (int t = 0; t < T; ++t) o.xq[t] = ops::act_q16_qs(x.data + (t0 + t) * x.stride);
    if constexpr (T == 1) {
      o.xd = ops::act_q16_d(x.data + t0 * x.stride, n_in);
      o.xs = ops::act_q16_s(x.data + t0 * x.stride, n_in);
      V::template t1<K, R>(o, y);
    } else {
      o.d_tr = x.d_tr + t0;
      o.s_tr = x.s_tr + t0;
      o.tr_stride = x.tr_stride;
      V::template multi<K, R, T>(o, y, ldy);
    }
  }
};

}  // namespace akvq::cpu::q32
