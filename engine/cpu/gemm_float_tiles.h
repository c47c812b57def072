// ISA-independent part of the float tiles (F32, F16, BF16 weights x f32 activations): the tile
// loop and the element types. Each group of 8 weights is converted once and used for T tokens;
// each group of 8 activations is used for R rows; a tail of n_in % 8 values is summed in scalar
// code. The ISA files (gemm_float.cpp: AVX2, gemm_float_neon.cpp: NEON) provide
//   V (vector traits): Acc (f32 partial sums of one row x one token), G8 (8 f32 values), zero(),
//                      hsum(Acc), load_x(const float* p) -> G8, fma(w, x, acc) -> acc + w * x
//   L (weight type, derived from F32 / F16 / BF16 below): load(const Elem* p) -> G8
// The AVX-512 tiles (gemm_float_avx512.cpp, 16 lanes, masked tail) have their own loop: code
// compiled for AVX-512 cannot share a template defined outside its target region (avx512_target.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/fp16.h"
#include "cpu/qgemm.h"
#include "cpu/tile_driver.h"

namespace akvq::cpu {

// F32, F16, BF16 tiles for AVX-512 (gemm_float_avx512.cpp); nullptr for other types or when the
// build has no AVX-512 kernels. The caller checks active_isa().
const TileKernels* simd_kernels_float_avx512(DType t);

}  // namespace akvq::cpu

namespace akvq::cpu::gemmf {

struct F32 {
  using Elem = float;
  static constexpr DType kType = DType::F32;
  static inline float scalar(float v) { return v; }
};
struct F16 {
  using Elem = uint16_t;
  static constexpr DType kType = DType::F16;
  static inline float scalar(uint16_t v) { return fp16_to_f32(v); }
};
struct BF16 {
  using Elem = uint16_t;
  static constexpr DType kType = DType::BF16;
  static inline float scalar(uint16_t v) { return bf16_to_f32(v); }
};

template <class V, class L>
struct Tiles {
  static constexpr TileShape kShape = {4, 2, 4, 4, 2};

  // y[t * ldy + r] = row r [n_in] . token t0 + t [n_in], rows w_stride bytes apart.
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    using E = typename L::Elem;
    const E* wr[R];
    const float* xr[T];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const E*>(w + r * w_stride);
    for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const float*>(x.data + (t0 + t) * x.stride);
    typename V::Acc acc[R][T];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) acc[r][t] = V::zero();
    }
    int64_t i = 0;
    for (; i + 8 <= n_in; i += 8) {
      typename V::G8 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = L::load(wr[r] + i);
      for (int t = 0; t < T; ++t) {
        const typename V::G8 xv = V::load_x(xr[t] + i);
        for (int r = 0; r < R; ++r) acc[r][t] = V::fma(wv[r], xv, acc[r][t]);
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        float s = V::hsum(acc[r][t]);
        for (int64_t j = i; j < n_in; ++j) s += L::scalar(wr[r][j]) * xr[t][j];
        y[t * ldy + r] = s;
      }
    }
  }
};

}  // namespace akvq::cpu::gemmf
