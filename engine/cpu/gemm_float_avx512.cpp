// AVX-512 tiles for float weights (F32, F16, BF16) against f32 activations, chosen at run time
// (cpu/isa.h). Each step reads 16 inner values: the R weight vectors are converted to f32 once
// (vcvtph2ps zmm for F16, a zero-extend and shift for BF16) and used for T tokens; each x vector
// is used for R rows. The last n_in % 16 values go through the same step with masked loads (the
// missing lanes add zeros), so every (row, token) pair accumulates in its own 16 lanes in one
// fixed order over the whole inner dimension and is reduced once at the end: the result does not
// depend on the tile, the chunk or the batch it is computed in (decode equals prefill bit for bit).
//
// Cost per step of a 4 x T tile: 4T FMAs and 4 conversions of 2 uops on the FMA ports for
// F16/BF16, i.e. at most T / (T + 2) of the FMA peak. T is kMaxTileT (cpu/qgemm.h), capped at 6:
// 4 x 6 = 24 accumulators + 4 weights + 1 x = 29 of the 32 zmm registers, no spill in the loop
// (GCC 12); 4 x 4 (21 zmm) while kMaxTileT is 4. A standalone timing of the CLIP f16 shapes
// (577 tokens, one thread, loaded machine) had 4 x 6 about 10-18% faster than 4 x 4.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "cpu/avx512_target.h"
#include "cpu/gemm_float_tiles.h"
#include "cpu/qgemm.h"
#include "cpu/tile_driver.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

AKVQ_AVX512_BEGIN

// Weight types: load(p) -> [16] f32 from p[0..15]; load_tail(p, m) -> lanes of mask m, others 0.
struct WF32 {
  using Elem = float;
  static constexpr DType kType = DType::F32;
  static inline __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static inline __m512 load_tail(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};

struct WF16 {
  using Elem = uint16_t;
  static constexpr DType kType = DType::F16;
  static inline __m512 load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline __m512 load_tail(const uint16_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};

struct WBF16 {
  using Elem = uint16_t;
  static constexpr DType kType = DType::BF16;
  static inline __m512 widen(__m256i h) {  // bf16 -> f32: the 16 bits become the high half
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static inline __m512 load(const uint16_t* p) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline __m512 load_tail(const uint16_t* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
};

// One step of R rows x T tokens: acc[r][t] += w_r[i..i+15] * x_t[i..i+15] lane by lane.
template <class L, int R, int T, bool Tail>
inline void step(const typename L::Elem* const* wr, const float* const* xr, int64_t i, __mmask16 m,
                 __m512 (&acc)[R][T]) {
  __m512 wv[R];
  for (int r = 0; r < R; ++r) wv[r] = Tail ? L::load_tail(wr[r] + i, m) : L::load(wr[r] + i);
  for (int t = 0; t < T; ++t) {
    const __m512 xv = Tail ? _mm512_maskz_loadu_ps(m, xr[t] + i) : _mm512_loadu_ps(xr[t] + i);
    for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
  }
}

// y[t * ldy + r] = row r [n_in] . token t0 + t [n_in] for r < R, t < T (rows w_stride bytes apart).
template <class L, int R, int T>
void tile(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  using E = typename L::Elem;
  const E* wr[R];
  const float* xr[T];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const E*>(w + r * w_stride);
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const float*>(x.data + (t0 + t) * x.stride);
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= n_in; i += 16) step<L, R, T, false>(wr, xr, i, 0, acc);
  if (i < n_in) step<L, R, T, true>(wr, xr, i, static_cast<__mmask16>((1u << (n_in - i)) - 1), acc);
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

constexpr int kTileT = kMaxTileT < 6 ? kMaxTileT : 6;  // tokens of the largest tile

template <class V, class L>
struct Tiles {
  static constexpr TileShape kShape = {4, kTileT, 4, 4, kTileT};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    tile<L, R, T>(w, w_stride, x, t0, n_in, y, ldy);
  }
};

AKVQ_AVX512_END

struct Avx512 {};

}  // namespace

const TileKernels* simd_kernels_float_avx512(DType t) {
  return find_tiles<Tiles, Avx512, WF32, WF16, WBF16>(t);
}

#else

const TileKernels* simd_kernels_float_avx512(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
