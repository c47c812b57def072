// AVX2 tiles for float weights (F32, F16 via F16C, BF16) in panels of 16 rows (cpu/qgemm.h:
// kPackP16) against f32 activations in tiles of kActTileT tokens (ActFormat::F32T), the AVX2
// counterpart of gemm_float_panel_avx512.cpp: a panel's 16 weights of inner index i are two
// 8-lane vectors (rows 0-7, 8-15), converted once for the T tokens whose x[i] is broadcast.
// A tile is one panel x T <= 6 tokens: 12 accumulators + 2 weights + 1 broadcast of the 16 ymm
// registers. Each (row, token) pair is the same FMA chain over i = 0 .. n_in - 1 in order as in
// the AVX-512 tiles, so both ISAs give the same bits.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "cpu/gemm_float_tiles.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

// Weight types (gemm_float_tiles.h): load(p) -> f32 of p[0..7] (the loads of cpu/simd.h).
struct PF32 : gemmf::F32 {
  static inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
};
struct PF16 : gemmf::F16 {
  static inline __m256 load(const uint16_t* p) { return load_f16x8(p); }
};
struct PBF16 : gemmf::BF16 {
  static inline __m256 load(const uint16_t* p) { return load_bf16x8(p); }
};

// y[t * ldy + j] = row j [n_in] . token t0 + t [n_in] for j < 16, t < T; w: one panel.
template <class L, int T>
void panel_tile(const uint8_t* w, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  constexpr int TT = kActTileT;
  const auto* wp = reinterpret_cast<const typename L::Elem*>(w);
  const float* xr[T];  // value i of token t0 + t at xr[t][TT * i] (ActFormat::F32T)
  for (int t = 0; t < T; ++t) {
    xr[t] = reinterpret_cast<const float*>(x.data + (t0 + t) / TT * x.stride) + (t0 + t) % TT;
  }
  __m256 lo[T], hi[T];  // rows 0-7 / 8-15 of token t
  for (int t = 0; t < T; ++t) lo[t] = _mm256_setzero_ps();
  for (int t = 0; t < T; ++t) hi[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n_in; ++i) {
    const __m256 w0 = L::load(wp + 16 * i), w1 = L::load(wp + 16 * i + 8);
    for (int t = 0; t < T; ++t) {
      const __m256 xb = _mm256_set1_ps(xr[t][TT * i]);  // (_mm256_broadcast_ss kept the accumulators in memory)
      lo[t] = _mm256_fmadd_ps(w0, xb, lo[t]);
      hi[t] = _mm256_fmadd_ps(w1, xb, hi[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(y + t * ldy, lo[t]);
    _mm256_storeu_ps(y + t * ldy + 8, hi[t]);
  }
}

template <class V, class L>
struct PanelTiles {
  static constexpr TileShape kShape = {1, 6, 1, 1, 6, ActFormat::F32T, kPackP16, 16};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    static_assert(R == 1, "one panel per tile");
    panel_tile<L, T>(w, x, t0, n_in, y, ldy);
  }
};

struct Avx2 {};

}  // namespace

const TileKernels* simd_kernels_float_p16_avx2(DType t) {
  return find_tiles<PanelTiles, Avx2, PF32, PF16, PBF16>(t);
}

#else

const TileKernels* simd_kernels_float_p16_avx2(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
