// AVX2 tiles for float weights (F32, F16 via F16C, BF16) against f32 activations: each group
// of 8 weights is converted once and used for T tokens; each x vector is used for R rows.
#include "core/fp16.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

struct LF32 {
  using Elem = float;
  static inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static inline float scalar(float v) { return v; }
};
struct LF16 {
  using Elem = uint16_t;
  static inline __m256 load(const uint16_t* p) { return load_f16x8(p); }
  static inline float scalar(uint16_t v) { return fp16_to_f32(v); }
};
struct LBF16 {
  using Elem = uint16_t;
  static inline __m256 load(const uint16_t* p) { return load_bf16x8(p); }
  static inline float scalar(uint16_t v) { return bf16_to_f32(v); }
};

template <class L, int R, int T>
void tile(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
          int64_t ldy) {
  using E = typename L::Elem;
  const E* wr[R];
  const float* xr[T];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const E*>(w + r * w_stride);
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const float*>(x.data + (t0 + t) * x.stride);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= n_in; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = L::load(wr[r] + i);
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(xr[t] + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = hsum(acc[r][t]);
      for (int64_t j = i; j < n_in; ++j) s += L::scalar(wr[r][j]) * xr[t][j];
      y[t * ldy + r] = s;
    }
  }
}

template <class L>
TileKernels make_kernels() {
  TileKernels k;
  k.fn[0][0] = tile<L, 1, 1>;
  k.fn[1][0] = tile<L, 2, 1>;
  k.fn[2][0] = tile<L, 3, 1>;
  k.fn[3][0] = tile<L, 4, 1>;
  k.fn[0][1] = tile<L, 1, 2>;
  k.fn[1][1] = tile<L, 2, 2>;
  k.fn[2][1] = tile<L, 3, 2>;
  k.fn[3][1] = tile<L, 4, 2>;
  k.pref_r1 = 4;
  k.pref_r = 4;
  k.pref_t = 2;
  return k;
}

}  // namespace

const TileKernels* simd_kernels_float(DType t) {
  static const TileKernels f32 = make_kernels<LF32>();
  static const TileKernels f16 = make_kernels<LF16>();
  static const TileKernels bf16 = make_kernels<LBF16>();
  switch (t) {
    case DType::F32: return &f32;
    case DType::F16: return &f16;
    case DType::BF16: return &bf16;
    default: return nullptr;
  }
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (gemm_float_neon.cpp)

const TileKernels* simd_kernels_float(DType) { return nullptr; }

#endif

const TileKernels* simd_kernels(DType t) {
  if (const TileKernels* k = simd_kernels_q32(t)) return k;
  if (const TileKernels* k = simd_kernels_kquant(t)) return k;
  return simd_kernels_float(t);
}

}  // namespace akvq::cpu
