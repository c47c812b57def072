// AVX-512 tiles for float weights (F32, F16, BF16) in panels of 16 rows (cpu/qgemm.h: kPackP16)
// against f32 activations, chosen at run time (cpu/isa.h). The 16 lanes of a vector are 16 output
// rows: for each inner index i, the panel's 16 weights w[16p .. 16p + 15][i] are one contiguous
// load (converted to f32 once for all T tokens) and token t's x[i] is broadcast, so a tile of R
// panels x T tokens does R·T FMAs per R loads + T broadcasts, with no horizontal sums: the
// accumulators are stored as they are (16 rows of one token).
//
// Each (row, token) pair is one FMA chain over i = 0 .. n_in - 1 in order, whatever the tile,
// the chunk or the batch: results do not depend on how the work is split. They differ in rounding
// from the row-major AVX-512 tiles (16 partial sums per pair), so a weight is either packed or
// not for all its uses (ops/pack.h: batch_only weights only, which never see a single token).
//
// Cost per inner index of a 2 x 12 tile (the largest): 24 FMAs, 2 conversions (F16: 2 uops
// each on the FMA ports; F32 none), 2 + 12 loads; 24 accumulators + 2 weights + 1 broadcast of
// the 32 zmm registers.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "cpu/tile_driver.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

AKVQ_AVX512_BEGIN

// Weight types: load(p) -> [16] f32 from p[0..15].
struct PF32 {
  using Elem = float;
  static constexpr DType kType = DType::F32;
  static inline __m512 load(const float* p) { return _mm512_loadu_ps(p); }
};

struct PF16 {
  using Elem = uint16_t;
  static constexpr DType kType = DType::F16;
  static inline __m512 load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};

struct PBF16 {
  using Elem = uint16_t;
  static constexpr DType kType = DType::BF16;
  static inline __m512 load(const uint16_t* p) {  // bf16 -> f32: the 16 bits become the high half
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
  }
};

// y[t * ldy + 16 r + j] = row 16 r + j [n_in] . token t0 + t [n_in] for r < R, j < 16, t < T;
// w: R panels, panel r at w + 16 r * w_stride (w_stride = bytes of one row in the file).
template <class L, int R, int T>
void panel_tile(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
                int64_t ldy) {
  using E = typename L::Elem;
  constexpr int TT = kActTileT;
  const E* wp[R];
  const float* xr[T];  // value i of token t0 + t at xr[t][TT * i] (ActFormat::F32T)
  for (int r = 0; r < R; ++r) wp[r] = reinterpret_cast<const E*>(w + 16 * r * w_stride);
  for (int t = 0; t < T; ++t) {
    xr[t] = reinterpret_cast<const float*>(x.data + (t0 + t) / TT * x.stride) + (t0 + t) % TT;
  }
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < n_in; ++i) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = L::load(wp[r] + 16 * i);
    for (int t = 0; t < T; ++t) {
      const __m512 xb = _mm512_set1_ps(xr[t][TT * i]);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xb, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy + 16 * r, acc[r][t]);
  }
}

template <class V, class L>
struct PanelTiles {
  static constexpr TileShape kShape = {2, kActTileT, 2, 2, kActTileT, ActFormat::F32T, kPackP16, 16};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    panel_tile<L, R, T>(w, w_stride, x, t0, n_in, y, ldy);
  }
};

AKVQ_AVX512_END

struct Avx512 {};

}  // namespace

const TileKernels* simd_kernels_float_p16_avx512(DType t) {
  return find_tiles<PanelTiles, Avx512, PF32, PF16, PBF16>(t);
}

#else

const TileKernels* simd_kernels_float_p16_avx512(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
