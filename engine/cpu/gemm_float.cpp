// AVX2 tiles for float weights (F32, F16 via F16C, BF16) against f32 activations: each group
// of 8 weights is converted once and used for T tokens; each x vector is used for R rows. The tile
// loop is shared (gemm_float_tiles.h); this file holds the loads and the vector traits.
#include "cpu/gemm_float_tiles.h"
#include "cpu/isa.h"
#include "cpu/qgemm.h"
#include "cpu/simd.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

struct Avx2 {
  using Acc = __m256;  // [8] f32 partial sums of one row x one token
  using G8 = __m256;   // [8] f32 values
  static inline Acc zero() { return _mm256_setzero_ps(); }
  static inline float hsum(Acc a) { return cpu::hsum(a); }
  static inline G8 load_x(const float* p) { return _mm256_loadu_ps(p); }
  static inline Acc fma(G8 w, G8 x, Acc acc) { return _mm256_fmadd_ps(w, x, acc); }
};

struct LF32 : gemmf::F32 {
  static inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
};
struct LF16 : gemmf::F16 {
  static inline __m256 load(const uint16_t* p) { return load_f16x8(p); }
};
struct LBF16 : gemmf::BF16 {
  static inline __m256 load(const uint16_t* p) { return load_bf16x8(p); }
};

}  // namespace

const TileKernels* simd_kernels_float(DType t) {
  return find_tiles<gemmf::Tiles, Avx2, LF32, LF16, LBF16>(t);
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (gemm_float_neon.cpp)

const TileKernels* simd_kernels_float(DType) {
  return nullptr;
}

#endif

const TileKernels* simd_kernels(DType t, int act_bits) {
  if (active_isa() == Isa::Scalar) return nullptr;
  if (active_isa() == Isa::Avx512) {
    if (const TileKernels* k = simd_kernels_q32_avx512(t, act_bits)) return k;
    if (const TileKernels* k = simd_kernels_float_avx512(t)) return k;
  }
  if (act_bits == 8) {
    if (const TileKernels* k = simd_kernels_kquant_act8(t)) return k;  // AVX2 Q4_K: Q8K rows
  }
  if (const TileKernels* k = simd_kernels_q32(t)) return k;
  if (const TileKernels* k = simd_kernels_kquant(t)) return k;
  return simd_kernels_float(t);
}

}  // namespace akvq::cpu
