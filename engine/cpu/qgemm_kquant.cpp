// AVX2 tiles for the K-quants (Q4_K, Q6_K) against ActQ8K activations (256-value super-blocks).
// Each (row, token) pair runs a super-block dot; the tile keeps R rows' super-blocks hot in L1
// while T tokens pass over them. Sub-block scales are applied with madd on the i16 products.
#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

using ops::ActQ8K;

// Unpacked scales of one Q4_K super-block.
struct Q4KScales {
  int16_t sc[8];
  int16_t mn[8];
  float d, dmin;
};

struct KQ4_K {
  using Block = ops::BlockQ4_K;
  using Scales = Q4KScales;
  static inline void scales(const Block* b, Scales& s) {
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      ops::q4k_scale_min(b->scales, j, sc, mn);
      s.sc[j] = static_cast<int16_t>(sc);
      s.mn[j] = static_cast<int16_t>(mn);
    }
    s.d = _cvtsh_ss(b->d);
    s.dmin = _cvtsh_ss(b->dmin);
  }
  // acc += d*dx*sum_j sc_j*dot_j ; returns the offset term -dmin*dx*sum_j mn_j*bsum_j.
  static inline float dot(const Block* b, const Scales& s, const ActQ8K* x, __m256& acc) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i sumi = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * k));
      const __m256i lo = _mm256_and_si256(v, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->qs + 64 * k));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->qs + 64 * k + 32));
      const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16(s.sc[2 * k]));
      const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16(s.sc[2 * k + 1]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(s.d * x->d), acc);
    int summ = 0;
    for (int j = 0; j < 8; ++j) summ += s.mn[j] * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    return -s.dmin * x->d * static_cast<float>(summ);
  }
};

struct Q6KScales {
  __m256i sc16;  // the 16 int8 scales widened to i16
  float d;
};

struct KQ6_K {
  using Block = ops::BlockQ6_K;
  using Scales = Q6KScales;
  static inline void scales(const Block* b, Scales& s) {
    s.sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));
    s.d = _cvtsh_ss(b->d);
  }
  static inline float dot(const Block* b, const Scales& s, const ActQ8K* x, __m256& acc) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i A = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + 64 * h));
      const __m256i B = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + 64 * h + 32));
      const __m256i Q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + 32 * h));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(Q, m3), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(B, m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 2), m3), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m3), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 6), m3), 4));
      for (int k = 0; k < 4; ++k) {
        const int g = 8 * h + 2 * k;  // groups g (values 0..15 of this 32) and g+1 (16..31)
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->qs + 128 * h + 32 * k));
        const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(b->scales[g + 1]), _mm_set1_epi16(b->scales[g]));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xv), sc));
      }
    }
    // q is stored +32: subtract 32 * sum_g sc_g * bsum_g.
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->bsums));
    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(_mm256_madd_epi16(bs, s.sc16), 5));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(s.d * x->d), acc);
    return 0.0f;
  }
};

template <class K, int R, int T>
void tile(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
          int64_t ldy) {
  using Block = typename K::Block;
  const int64_t nb = n_in / ops::kQKK;
  __m256 acc[R][T];
  float off[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps(), off[r][t] = 0.0f;
  }
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const Block* blk = reinterpret_cast<const Block*>(w + r * w_stride) + b;
      typename K::Scales s;
      K::scales(blk, s);
      for (int t = 0; t < T; ++t) {
        const ActQ8K* xb = reinterpret_cast<const ActQ8K*>(x.data + (t0 + t) * x.stride) + b;
        off[r][t] += K::dot(blk, s, xb, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = hsum(acc[r][t]) + off[r][t];
  }
}

template <class K>
TileKernels make_kernels() {
  TileKernels k;
  k.fn[0][0] = tile<K, 1, 1>;
  k.fn[1][0] = tile<K, 2, 1>;
  k.fn[0][1] = tile<K, 1, 2>;
  k.fn[1][1] = tile<K, 2, 2>;
  k.pref_r1 = 2;
  k.pref_r = 2;
  k.pref_t = 2;
  return k;
}

}  // namespace

const TileKernels* simd_kernels_kquant(DType t) {
  static const TileKernels q4_k = make_kernels<KQ4_K>();
  static const TileKernels q6_k = make_kernels<KQ6_K>();
  switch (t) {
    case DType::Q4_K: return &q4_k;
    case DType::Q6_K: return &q6_k;
    default: return nullptr;
  }
}

#else

const TileKernels* simd_kernels_kquant(DType) { return nullptr; }

#endif

}  // namespace akvq::cpu
