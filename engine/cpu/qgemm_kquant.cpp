// AVX2 tiles for the K-quants (Q4_K, Q6_K) against ActQ16K activations (int16, 256-value
// super-blocks); the tile loop over super-blocks is shared (qgemm_kquant_tiles.h), this file holds
// the intrinsics. Each row's super-block is unpacked into 256 int16 weights with the sub-block
// scales folded in (Q4_K: q * sc <= 15 * 63; Q6_K: (q - 32) * sc, |.| <= 32 * 128) and T tokens
// are multiplied with it by madd.
// Integer bounds (|x| <= 32767): each int32 lane sums 2 products per madd. Q4_K: 16 madds per
// super-block -> 32 products per lane, <= 32 * 945 * 32767 < 2^30. Q6_K: summed per half
// super-block -> 16 products per lane, <= 16 * 4096 * 32767 = 2147418112 < 2^31 - 1; the two
// halves are converted to f32 separately.
#include "cpu/qgemm.h"
#include "cpu/qgemm_kquant_tiles.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

using kquant::Unpacked;
using ops::ActQ16K;

struct KQ4_K : kquant::Q4_K {
  static inline void unpack(const Block* b, Unpacked& u) {
    int sc[8];
    for (int j = 0; j < 8; ++j) ops::q4k_scale_min(b->scales, j, sc[j], u.mn[j]);
    const __m256i m4 = _mm256_set1_epi16(15);
    for (int k = 0; k < 4; ++k) {
      const uint8_t* q = b->qs + 32 * k;
      const __m256i v0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
      const __m256i v1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)));
      const __m256i s0 = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * k]));
      const __m256i s1 = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * k + 1]));
      __m256i* o = reinterpret_cast<__m256i*>(u.wq + 64 * k);
      _mm256_store_si256(o + 0, _mm256_mullo_epi16(_mm256_and_si256(v0, m4), s0));
      _mm256_store_si256(o + 1, _mm256_mullo_epi16(_mm256_and_si256(v1, m4), s0));
      _mm256_store_si256(o + 2, _mm256_mullo_epi16(_mm256_srli_epi16(v0, 4), s1));
      _mm256_store_si256(o + 3, _mm256_mullo_epi16(_mm256_srli_epi16(v1, 4), s1));
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

struct KQ6_K : kquant::Q6_K {
  static inline void unpack(const Block* b, Unpacked& u) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), c32 = _mm256_set1_epi16(32);
    for (int h = 0; h < 2; ++h) {
      const __m256i A = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + 64 * h));
      const __m256i B = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + 64 * h + 32));
      const __m256i Q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + 32 * h));
      __m256i q[4];  // bytes 0..63 of values 128h + 32k + l
      q[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(Q, m3), 4));
      q[1] =
          _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 2), m3), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m3), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 6), m3), 4));
      for (int k = 0; k < 4; ++k) {
        const int base = 128 * h + 32 * k, g = base / 16;  // groups g (values 0-15) and g+1
        const __m256i lo = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(q[k])), c32);
        const __m256i hi = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(q[k], 1)), c32);
        __m256i* o = reinterpret_cast<__m256i*>(u.wq + base);
        _mm256_store_si256(o, _mm256_mullo_epi16(lo, _mm256_set1_epi16(b->scales[g])));
        _mm256_store_si256(o + 1, _mm256_mullo_epi16(hi, _mm256_set1_epi16(b->scales[g + 1])));
      }
    }
    u.d = _cvtsh_ss(b->d);
    u.dmin = 0.0f;
  }
  static inline float offset(const Unpacked&, const ActQ16K*) { return 0.0f; }
};

struct Avx2 {
  using Acc = __m256;  // [8] f32 partial sums of one row x one token
  static inline Acc zero() { return _mm256_setzero_ps(); }
  static inline float hsum(Acc a) { return cpu::hsum(a); }
  // acc += d * dx * (unpacked row . x) over one super-block.
  template <class K>
  static inline void dot(const Unpacked& u, const ActQ16K* x, Acc& acc) {
    constexpr int kPer = 16 / K::kHalves;  // madds per int32 accumulation
    __m256 f = _mm256_setzero_ps();
    for (int h = 0; h < K::kHalves; ++h) {
      __m256i s = _mm256_setzero_si256();
      for (int i = h * kPer; i < (h + 1) * kPer; ++i) {
        const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.wq + 16 * i));
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->qs + 16 * i));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(w, v));
      }
      f = _mm256_add_ps(f, _mm256_cvtepi32_ps(s));
    }
    acc = _mm256_fmadd_ps(f, _mm256_set1_ps(u.d * x->d), acc);
  }
};

}  // namespace

const TileKernels* simd_kernels_kquant(DType t) {
  return find_tiles<kquant::Tiles, Avx2, KQ4_K, KQ6_K>(t);
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (qgemm_kquant_neon.cpp)

const TileKernels* simd_kernels_kquant(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
