// AVX-512 tiles for Q4_K and Q6_K against ActQ16K activations (the same 16-bit super-blocks as the AVX2
// tiles, or their 8-bit levels), chosen at run time (cpu/isa.h). The tile loop is the shared one
// of qgemm_kquant_tiles.h: each row's super-block is unpacked once into 256 int16 weights with the
// sub-block scales folded in (Q4_K: q * sc <= 15 * 63; Q6_K: |(q - 32) * sc| <= 32 * 128), and every token is
// multiplied with it by vpdpwssd (int16 x int16, two products summed per int32 lane): 8 instructions per super-block
// and token. Bounds: 16 products per lane, Q4_K <= 16 * 945 * 32767 < 2^29, Q6_K <= 16 * 4096 *
// 32767 = 2147418112 < 2^31 - 1, so the super-block's
// integer sums are exact; they are converted once and scaled by d_w * d_x, and the min term
// (-dmin * d_x * sum_j mn_j * sums_j) is summed exactly in integers as in the AVX2 tiles.
// Every (row, token) pair is computed by the same sequence whatever the tile (batch-invariant).
#include <cstdint>
#include <cstring>

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

// The 8 6-bit scales and mins of a Q4_K super-block (ops/qblocks.h: q4k_scale_min) four at a
// time: with the 12 bytes as words w0, w1, w2, bytes j of
//   sc[0..3] = w0 & 63,  mn[0..3] = w1 & 63,
//   sc[4..7] = (w2 & 15) | (w0 >> 6) << 4,  mn[4..7] = (w2 >> 4 & 15) | (w1 >> 6) << 4.
inline void q4k_scales_mins(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t w0, w1, w2;
  std::memcpy(&w0, s, 4);
  std::memcpy(&w1, s + 4, 4);
  std::memcpy(&w2, s + 8, 4);
  const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
  const uint32_t s03 = w0 & lo6, m03 = w1 & lo6;
  const uint32_t s47 = (w2 & lo4) | (((w0 >> 6) & lo2) << 4);
  const uint32_t m47 = ((w2 >> 4) & lo4) | (((w1 >> 6) & lo2) << 4);
  std::memcpy(sc, &s03, 4);
  std::memcpy(sc + 4, &s47, 4);
  std::memcpy(mn, &m03, 4);
  std::memcpy(mn + 4, &m47, 4);
}

struct K4_K : kquant::Q4_K {
  static inline void unpack(const Block* b, Unpacked& u) {
    uint8_t sc[8], mn[8];
    q4k_scales_mins(b->scales, sc, mn);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(u.mn),
                        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn))));
    const __m512i m4 = _mm512_set1_epi16(15);
    for (int k = 0; k < 4; ++k) {
      // bytes 32k .. 32k + 31: low nibbles = values 64k + l, high nibbles = values 64k + 32 + l
      const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * k)));
      __m512i* o = reinterpret_cast<__m512i*>(u.wq + 64 * k);
      _mm512_store_si512(
          o + 0, _mm512_mullo_epi16(_mm512_and_si512(v, m4), _mm512_set1_epi16(static_cast<int16_t>(sc[2 * k]))));
      _mm512_store_si512(
          o + 1, _mm512_mullo_epi16(_mm512_srli_epi16(v, 4), _mm512_set1_epi16(static_cast<int16_t>(sc[2 * k + 1]))));
    }
    u.d = _cvtsh_ss(b->d);
    u.dmin = _cvtsh_ss(b->dmin);
  }
  // the min term -dmin * dx * sum_j mn_j * sums_j (|sum| <= 8 * 63 * 32 * 32767 < 2^31; the
  // int32 lanes add exactly, in any order)
  static inline float offset(const Unpacked& u, const ActQ16K* x) {
    const __m256i p = _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u.mn)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->sums)));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return -u.dmin * x->d * static_cast<float>(_mm_cvtsi128_si32(s));
  }
};

struct K6_K : kquant::Q6_K {
  // Half h (values 128h .. 128h + 127): ql bytes A = ql[64h ..], B = ql[64h + 32 ..], qh bytes Q =
  // qh[32h ..]; value 128h + 32k + l = nibble (k < 2: low, else high) of (k odd ? B : A)[l] | 2 bits
  // of Q[l] at shift 2k, minus 32, times the int8 scale of its group of 16.
  static inline void unpack(const Block* b, Unpacked& u) {
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3), c32 = _mm512_set1_epi16(32);
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));  // [16]
    const __m512i sc16 = _mm512_castsi256_si512(sc);
    for (int h = 0; h < 2; ++h) {
      const __m512i AB = _mm512_loadu_si512(b->ql + 64 * h);  // [A | B]
      const __m256i Q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + 32 * h));
      const __m512i QQ = _mm512_inserti64x4(_mm512_castsi256_si512(Q), _mm256_srli_epi16(Q, 2), 1);  // [Q | Q >> 2]
      const __m512i q01 = _mm512_or_si512(_mm512_and_si512(AB, m4), _mm512_slli_epi16(_mm512_and_si512(QQ, m3), 4));
      const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(AB, 4), m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(QQ, 4), m3), 4));
      const __m512i qk[2] = {q01, q23};  // bytes of values k = 0, 1 and k = 2, 3
      for (int k = 0; k < 4; ++k) {
        const __m256i bytes = k & 1 ? _mm512_extracti64x4_epi64(qk[k / 2], 1) : _mm512_castsi512_si256(qk[k / 2]);
        const int g = 8 * h + 2 * k;  // groups g (l < 16) and g + 1
        const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<int16_t>(g)),
                                               _mm256_set1_epi16(static_cast<int16_t>(g + 1)), 1);
        const __m512i v = _mm512_sub_epi16(_mm512_cvtepu8_epi16(bytes), c32);
        _mm512_store_si512(u.wq + 128 * h + 32 * k, _mm512_mullo_epi16(v, _mm512_permutexvar_epi16(idx, sc16)));
      }
    }
    u.d = _cvtsh_ss(b->d);
    u.dmin = 0.0f;
  }
  static inline float offset(const Unpacked&, const ActQ16K*) { return 0.0f; }
};

// The tile loop of kquant::Tiles (qgemm_kquant_tiles.h), defined here again so that it is
// compiled for AVX-512 with the kernels it calls: the shared template is defined before
// AKVQ_AVX512_BEGIN and would keep the build's ISA, passing 512-bit values through calls.
template <class V, class K>
struct Tiles512 {
  static constexpr TileShape kShape = kquant::Tiles<V, K>::kShape;

  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    using Block = typename K::Block;
    const int64_t nb = n_in / ops::kQKK;
    Unpacked u[R];
    typename V::Acc acc[R][T];
    float off[R][T];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) acc[r][t] = V::zero(), off[r][t] = 0.0f;
    }
    for (int64_t b = 0; b < nb; ++b) {
      for (int r = 0; r < R; ++r) K::unpack(reinterpret_cast<const Block*>(w + r * w_stride) + b, u[r]);
      for (int t = 0; t < T; ++t) {
        const ActQ16K* xb = reinterpret_cast<const ActQ16K*>(x.data + (t0 + t) * x.stride) + b;
        for (int r = 0; r < R; ++r) {
          V::template dot<K>(u[r], xb, acc[r][t]);
          off[r][t] += K::offset(u[r], xb);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) y[t * ldy + r] = V::hsum(acc[r][t]) + off[r][t];
    }
  }
};

AKVQ_AVX512_END

}  // namespace

const TileKernels* simd_kernels_kquant_avx512(DType t) {
  return find_tiles<Tiles512, V512, K4_K, K6_K>(t);
}

#else

const TileKernels* simd_kernels_kquant_avx512(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
