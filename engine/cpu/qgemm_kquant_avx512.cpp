// AVX-512 tiles for Q4_K against ActQ16K activations (the same 16-bit super-blocks as the AVX2
// tiles, or their 8-bit levels), chosen at run time (cpu/isa.h). The tile loop is the shared one
// of qgemm_kquant_tiles.h: each row's super-block is unpacked once into 256 int16 weights with the
// 6-bit sub-block scales folded in (q * sc <= 15 * 63), and every token is multiplied with it by
// vpdpwssd (int16 x int16, two products summed per int32 lane): 8 instructions per super-block
// and token. Bounds: 16 products per lane, <= 16 * 945 * 32767 < 2^29, so the super-block's
// integer sums are exact; they are converted once and scaled by d_w * d_x, and the min term
// (-dmin * d_x * sum_j mn_j * sums_j) is summed exactly in integers as in the AVX2 tiles.
// Every (row, token) pair is computed by the same sequence whatever the tile (batch-invariant).
#include <cstdint>

#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "cpu/qgemm_kquant_tiles.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

using kquant::Unpacked;
using ops::ActQ16K;

AKVQ_AVX512_BEGIN

struct V512 {
  using Acc = __m512;  // [16] f32 partial sums of one row x one token
  static inline Acc zero() { return _mm512_setzero_ps(); }
  static inline float hsum(Acc a) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // acc += d * dx * (u.wq . x->qs) over one super-block (one exact int32 sum per lane).
  template <class K>
  static inline void dot(const Unpacked& u, const ActQ16K* x, Acc& acc) {
    __m512i s = _mm512_setzero_si512();
    for (int i = 0; i < 256; i += 32) {
      s = _mm512_dpwssd_epi32(s, _mm512_load_si512(u.wq + i), _mm512_load_si512(x->qs + i));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(u.d * x->d), acc);
  }
};

struct K4_K : kquant::Q4_K {
  static inline void unpack(const Block* b, Unpacked& u) {
    int sc[8];
    for (int j = 0; j < 8; ++j) ops::q4k_scale_min(b->scales, j, sc[j], u.mn[j]);
    const __m512i m4 = _mm512_set1_epi16(15);
    for (int k = 0; k < 4; ++k) {
      // bytes 32k .. 32k + 31: low nibbles = values 64k + l, high nibbles = values 64k + 32 + l
      const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * k)));
      __m512i* o = reinterpret_cast<__m512i*>(u.wq + 64 * k);
      _mm512_store_si512(o + 0, _mm512_mullo_epi16(_mm512_and_si512(v, m4), _mm512_set1_epi16(static_cast<int16_t>(sc[2 * k]))));
      _mm512_store_si512(o + 1, _mm512_mullo_epi16(_mm512_srli_epi16(v, 4), _mm512_set1_epi16(static_cast<int16_t>(sc[2 * k + 1]))));
    }
    u.d = _cvtsh_ss(b->d);
    u.dmin = _cvtsh_ss(b->dmin);
  }
  // the min term -dmin * dx * sum_j mn_j * sums_j (|sum| <= 8 * 63 * 32 * 32767 < 2^31)
  static inline float offset(const Unpacked& u, const ActQ16K* x) {
    int32_t summ = 0;
    for (int j = 0; j < 8; ++j) summ += u.mn[j] * x->sums[j];
    return -u.dmin * x->d * static_cast<float>(summ);
  }
};

AKVQ_AVX512_END

}  // namespace

const TileKernels* simd_kernels_kquant_avx512(DType t) {
  return find_tiles<kquant::Tiles, V512, K4_K>(t);
}

#else

const TileKernels* simd_kernels_kquant_avx512(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
