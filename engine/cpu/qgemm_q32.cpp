// AVX2 tiles for the 32-value block types Q4_0, Q4_1 and Q8_0 against ActQ8 activations.
// Per block: the weight block is unpacked once into 32 bytes and reused for T tokens; each
// activation block is loaded once and reused for R rows. Integer dot with maddubs/madd, then
// f32 fma with the product of the two block scales. The offset term of Q4_0/Q4_1
// (m * dx * sum(xq) = m * s) is accumulated as a vector over the T tokens from the transposed s.
#include <cstring>
#include <type_traits>

#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"
#include "ops/ref.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

using ops::ActQ8;

// Software prefetch of the weight rows ahead of the decode loops (decode streams every weight
// from DRAM once per token; measured 10-25% faster than hardware prefetch alone on Zen 3).
// Past a row's end this fetches the start of the next rows, which the next tiles read.
constexpr bool kPrefetch = true;

template <int R, class Block>
inline __m128i pack_u16(const Block* const* wr, int64_t b) {
  uint16_t v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int r = 0; r < R; ++r) v[r] = wr[r][b].d;
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(v));
}

struct KQ4_0 {
  using Block = ops::BlockQ4_0;
  static constexpr bool kHasMin = true;
  static inline __m256i load(const Block* b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs));
    const __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
  }
  static inline float min(const Block*, float d) { return -8.0f * d; }
  // fp16 scales of block b of R rows, packed for one cvtph: lane r = d_r.
  template <int R>
  static inline __m128i scales(const Block* const* wr, int64_t b) {
    return pack_u16<R>(wr, b);
  }
  static inline __m256i dot(__m256i q, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
  }
};

struct KQ4_1 {
  using Block = ops::BlockQ4_1;
  static constexpr bool kHasMin = true;
  static inline __m256i load(const Block* b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs));
    const __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
  }
  static inline float min(const Block* b, float) { return _cvtsh_ss(b->m); }
  // lanes 2r = d_r, 2r+1 = m_r (d and m are adjacent in the block)
  template <int R>
  static inline __m128i scales(const Block* const* wr, int64_t b) {
    int32_t v[4] = {0, 0, 0, 0};
    for (int r = 0; r < R; ++r) std::memcpy(&v[r], reinterpret_cast<const uint8_t*>(wr[r] + b), 4);
    return _mm_setr_epi32(v[0], v[1], v[2], v[3]);
  }
  static inline __m256i dot(__m256i q, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
  }
};

struct KQ8_0 {
  using Block = ops::BlockQ8_0;
  static constexpr bool kHasMin = false;
  static inline __m256i load(const Block* b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
  }
  static inline float min(const Block*, float) { return 0.0f; }
  template <int R>
  static inline __m128i scales(const Block* const* wr, int64_t b) {
    return pack_u16<R>(wr, b);
  }
  static inline __m256i dot(__m256i q, __m256i x) {  // signed x signed via |q| and sign(x, q)
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
};

template <class K, int R, int T>
void tile(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
          int64_t ldy) {
  using Block = typename K::Block;
  const int64_t nb = n_in / ops::kQK;
  const Block* wr[R];
  const ActQ8* xr[T];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w + r * w_stride);
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const ActQ8*>(x.data + (t0 + t) * x.stride);
  __m256 acc[R][T];
  __m256 accm[R];
  for (int r = 0; r < R; ++r) {
    accm[r] = _mm256_setzero_ps();
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  const float* s_tr = x.s_tr + t0;
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q[R];
    __m256 dw[R];
    for (int r = 0; r < R; ++r) {
      const Block* blk = wr[r] + b;
      q[r] = K::load(blk);
      const float d = _cvtsh_ss(blk->d);
      dw[r] = _mm256_set1_ps(d);
      if (K::kHasMin) {
        accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(K::min(blk, d)), _mm256_loadu_ps(s_tr + b * x.s_stride), accm[r]);
      }
    }
    for (int t = 0; t < T; ++t) {
      const ActQ8* xb = xr[t] + b;
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
      const __m256 dx = _mm256_broadcast_ss(&xb->d);
      for (int r = 0; r < R; ++r) {
        const __m256 p = _mm256_cvtepi32_ps(K::dot(q[r], xv));
        acc[r][t] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw[r], dx), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(32) float m[8];
    _mm256_store_ps(m, accm[r]);
    for (int t = 0; t < T; ++t) y[t * ldy + r] = hsum(acc[r][t]) + (K::kHasMin ? m[t] : 0.0f);
  }
}

// Decode tile (one token): the fp16 scales of the R rows are converted together, the offset
// term is one vector fma for all rows (lanes = rows), and the activation block is loaded once.
template <class K, int R>
void tile_t1(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
             int64_t) {
  using Block = typename K::Block;
  constexpr bool kQ41 = std::is_same<K, KQ4_1>::value;
  const int64_t nb = n_in / ops::kQK;
  const Block* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w + r * w_stride);
  const ActQ8* xr = reinterpret_cast<const ActQ8*>(x.data + t0 * x.stride);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  __m256 accm = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const ActQ8* xb = xr + b;
    const __m256 sc = _mm256_cvtph_ps(K::template scales<R>(wr, b));
    const __m256 dd = _mm256_mul_ps(sc, _mm256_broadcast_ss(&xb->d));  // d_r * dx
    if (K::kHasMin) accm = _mm256_fmadd_ps(sc, _mm256_broadcast_ss(&xb->s), accm);
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
    for (int r = 0; r < R; ++r) {
      if (kPrefetch) _mm_prefetch(reinterpret_cast<const char*>(wr[r] + b) + 1024, _MM_HINT_T0);
      const __m256 p = _mm256_cvtepi32_ps(K::dot(K::load(wr[r] + b), xv));
      const __m256 s = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(kQ41 ? 2 * r : r));
      acc[r] = _mm256_fmadd_ps(p, s, acc[r]);
    }
  }
  alignas(32) float m[8];
  _mm256_store_ps(m, accm);
  for (int r = 0; r < R; ++r) {
    // Q4_1: lane 2r+1 holds sum m_r * s; Q4_0: lane r holds sum d_r * s, the offset is -8 of it.
    const float off = !K::kHasMin ? 0.0f : kQ41 ? m[2 * r + 1] : -8.0f * m[r];
    y[r] = hsum(acc[r]) + off;
  }
}

// Decode tile for Q4_0 / Q4_1, two blocks at a time: the 16 packed bytes of blocks b and b+1 of a
// row share one register, so one nibble split serves 64 values and one madd/cvt/fma pair serves
// two blocks (lanes 0-3: block b, lanes 4-7: block b+1). The activation halves are regrouped to
// match with two lane permutes shared by all rows. Scales: 4 bytes from each block start give
// (d, m) for Q4_1 and (d, unused) for Q4_0 in lanes (2r, 2r+1) after one cvtph.
template <int R>
inline __m128i scales32(const uint8_t* const* wr, int64_t off) {
  int32_t v[4] = {0, 0, 0, 0};
  for (int r = 0; r < R; ++r) std::memcpy(&v[r], wr[r] + off, 4);
  return _mm_setr_epi32(v[0], v[1], v[2], v[3]);
}

template <class K, int R>
void tile_t1_q4(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in,
                float* y, int64_t) {
  using Block = typename K::Block;
  constexpr bool kQ41 = std::is_same<K, KQ4_1>::value;
  constexpr int64_t kBytes = sizeof(Block);
  constexpr int64_t kQs = kQ41 ? 4 : 2;  // offset of qs in the block
  const int64_t nb = n_in / ops::kQK;
  const uint8_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + r * w_stride;
  const ActQ8* xr = reinterpret_cast<const ActQ8*>(x.data + t0 * x.stride);
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  __m256 accm = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const ActQ8* x0 = xr + b;
    const ActQ8* x1 = x0 + 1;
    const __m256i X0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0->qs));
    const __m256i X1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1->qs));
    const __m256i xlo = _mm256_permute2x128_si256(X0, X1, 0x20);  // x_b[0..15] | x_b1[0..15]
    const __m256i xhi = _mm256_permute2x128_si256(X0, X1, 0x31);  // x_b[16..31] | x_b1[16..31]
    const __m256 A0 = _mm256_cvtph_ps(scales32<R>(wr, b * kBytes));
    const __m256 A1 = _mm256_cvtph_ps(scales32<R>(wr, (b + 1) * kBytes));
    accm = _mm256_fmadd_ps(A0, _mm256_broadcast_ss(&x0->s), accm);
    accm = _mm256_fmadd_ps(A1, _mm256_broadcast_ss(&x1->s), accm);
    const __m256 D0 = _mm256_mul_ps(A0, _mm256_broadcast_ss(&x0->d));
    const __m256 D1 = _mm256_mul_ps(A1, _mm256_broadcast_ss(&x1->d));
    const __m256 Dlo = _mm256_permute2f128_ps(D0, D1, 0x20);  // rows 0, 1
    const __m256 Dhi = _mm256_permute2f128_ps(D0, D1, 0x31);  // rows 2, 3
    for (int r = 0; r < R; ++r) {
      const uint8_t* q = wr[r] + b * kBytes + kQs;
      if (kPrefetch) _mm_prefetch(reinterpret_cast<const char*>(q + 512), _MM_HINT_T0);
      const __m256i v = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + kBytes)), 1);
      const __m256i lo = _mm256_and_si256(v, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
      const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
      const __m256 src = r < 2 ? Dlo : Dhi;
      const __m256 sc = (r % 2 == 0) ? _mm256_permute_ps(src, 0x00) : _mm256_permute_ps(src, 0xaa);
      acc[r] = _mm256_fmadd_ps(f, sc, acc[r]);
    }
  }
  for (; b < nb; ++b) {  // odd block count: last block alone
    const ActQ8* xb = xr + b;
    const __m256 A = _mm256_cvtph_ps(scales32<R>(wr, b * kBytes));
    accm = _mm256_fmadd_ps(A, _mm256_broadcast_ss(&xb->s), accm);
    const __m256 D = _mm256_mul_ps(A, _mm256_broadcast_ss(&xb->d));
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
    for (int r = 0; r < R; ++r) {
      const __m256 f = _mm256_cvtepi32_ps(K::dot(K::load(reinterpret_cast<const Block*>(wr[r]) + b), xv));
      acc[r] = _mm256_fmadd_ps(f, _mm256_permutevar8x32_ps(D, _mm256_set1_epi32(2 * r)), acc[r]);
    }
  }
  alignas(32) float m[8];
  _mm256_store_ps(m, accm);
  for (int r = 0; r < R; ++r) {
    // lane 2r+1: sum m_r * s (Q4_1); lane 2r: sum d_r * s, the Q4_0 offset is -8 times that
    y[r] = hsum(acc[r]) + (kQ41 ? m[2 * r + 1] : -8.0f * m[2 * r]);
  }
}

// Several tokens, Q4_0 / Q4_1, two blocks at a time (as tile_t1_q4): each row's two blocks are
// unpacked once for T tokens, each token's two activation blocks are regrouped once for R rows.
// The offset term m * s is a vector over tokens (transposed s) per row.
template <class K, int R, int T>
void tile_q4(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
             int64_t ldy) {
  using Block = typename K::Block;
  constexpr bool kQ41 = std::is_same<K, KQ4_1>::value;
  constexpr int64_t kBytes = sizeof(Block);
  constexpr int64_t kQs = kQ41 ? 4 : 2;
  const int64_t nb = n_in / ops::kQK;
  const uint8_t* wr[R];
  const ActQ8* xr[T];
  for (int r = 0; r < R; ++r) wr[r] = w + r * w_stride;
  for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const ActQ8*>(x.data + (t0 + t) * x.stride);
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  __m256 acc[R][T];
  __m256 accm[R];
  for (int r = 0; r < R; ++r) {
    accm[r] = _mm256_setzero_ps();
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  const float* s_tr = x.s_tr + t0;
  const int mlane = kQ41 ? 1 : 0;  // lane of m (Q4_1) or d (Q4_0, offset -8 d) in scales32
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m256 A0 = _mm256_cvtph_ps(scales32<R>(wr, b * kBytes));
    const __m256 A1 = _mm256_cvtph_ps(scales32<R>(wr, (b + 1) * kBytes));
    const __m256 S0 = _mm256_loadu_ps(s_tr + b * x.s_stride);
    const __m256 S1 = _mm256_loadu_ps(s_tr + (b + 1) * x.s_stride);
    __m256i lo[R], hi[R];
    __m256 dw[R];
    for (int r = 0; r < R; ++r) {
      accm[r] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(A0, _mm256_set1_epi32(2 * r + mlane)), S0, accm[r]);
      accm[r] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(A1, _mm256_set1_epi32(2 * r + mlane)), S1, accm[r]);
      const __m256 dlo = r < 2 ? _mm256_permute2f128_ps(A0, A1, 0x20) : _mm256_permute2f128_ps(A0, A1, 0x31);
      dw[r] = (r % 2 == 0) ? _mm256_permute_ps(dlo, 0x00) : _mm256_permute_ps(dlo, 0xaa);
      const uint8_t* q = wr[r] + b * kBytes + kQs;
      const __m256i v = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + kBytes)), 1);
      lo[r] = _mm256_and_si256(v, m4);
      hi[r] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    for (int t = 0; t < T; ++t) {
      const ActQ8* x0 = xr[t] + b;
      const __m256i X0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0->qs));
      const __m256i X1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>((x0 + 1)->qs));
      const __m256i xlo = _mm256_permute2x128_si256(X0, X1, 0x20);
      const __m256i xhi = _mm256_permute2x128_si256(X0, X1, 0x31);
      const __m256 dx = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(&x0->d)),
                                             _mm_broadcast_ss(&(x0 + 1)->d), 1);
      for (int r = 0; r < R; ++r) {
        const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo[r], xlo), _mm256_maddubs_epi16(hi[r], xhi));
        const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
        acc[r][t] = _mm256_fmadd_ps(f, _mm256_mul_ps(dw[r], dx), acc[r][t]);
      }
    }
  }
  for (; b < nb; ++b) {  // odd block count: last block alone
    const __m256 A = _mm256_cvtph_ps(scales32<R>(wr, b * kBytes));
    const __m256 S = _mm256_loadu_ps(s_tr + b * x.s_stride);
    for (int r = 0; r < R; ++r) {
      accm[r] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(A, _mm256_set1_epi32(2 * r + mlane)), S, accm[r]);
      const __m256i q = K::load(reinterpret_cast<const Block*>(wr[r]) + b);
      const __m256 d = _mm256_permutevar8x32_ps(A, _mm256_set1_epi32(2 * r));
      for (int t = 0; t < T; ++t) {
        const ActQ8* xb = xr[t] + b;
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
        const __m256 f = _mm256_cvtepi32_ps(K::dot(q, xv));
        acc[r][t] = _mm256_fmadd_ps(f, _mm256_mul_ps(d, _mm256_broadcast_ss(&xb->d)), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(32) float m[8];
    _mm256_store_ps(m, accm[r]);
    for (int t = 0; t < T; ++t) y[t * ldy + r] = hsum(acc[r][t]) + (kQ41 ? m[t] : -8.0f * m[t]);
  }
}

template <class K>
TileKernels make_kernels() {
  TileKernels k;
  if constexpr (K::kHasMin) {  // Q4_0, Q4_1
    k.fn[0][0] = tile_t1_q4<K, 1>;
    k.fn[1][0] = tile_t1_q4<K, 2>;
    k.fn[2][0] = tile_t1_q4<K, 3>;
    k.fn[3][0] = tile_t1_q4<K, 4>;
  } else {
    k.fn[0][0] = tile_t1<K, 1>;
    k.fn[1][0] = tile_t1<K, 2>;
    k.fn[2][0] = tile_t1<K, 3>;
    k.fn[3][0] = tile_t1<K, 4>;
  }
  if constexpr (K::kHasMin) {
    k.fn[0][1] = tile_q4<K, 1, 2>;
    k.fn[1][1] = tile_q4<K, 2, 2>;
    k.fn[2][1] = tile_q4<K, 3, 2>;
    k.fn[3][1] = tile_q4<K, 4, 2>;
    k.fn[0][2] = tile_q4<K, 1, 3>;
    k.fn[1][2] = tile_q4<K, 2, 3>;
    k.fn[0][3] = tile_q4<K, 1, 4>;
    k.fn[1][3] = tile_q4<K, 2, 4>;
  } else {
    k.fn[0][1] = tile<K, 1, 2>;
    k.fn[1][1] = tile<K, 2, 2>;
    k.fn[2][1] = tile<K, 3, 2>;
    k.fn[3][1] = tile<K, 4, 2>;
    k.fn[0][2] = tile<K, 1, 3>;
    k.fn[1][2] = tile<K, 2, 3>;
    k.fn[0][3] = tile<K, 1, 4>;
    k.fn[1][3] = tile<K, 2, 4>;
  }
  k.pref_r1 = 4;
  k.pref_r = 2;
  k.pref_t = 4;
  return k;
}

}  // namespace

const TileKernels* simd_kernels_q32(DType t) {
  static const TileKernels q4_0 = make_kernels<KQ4_0>();
  static const TileKernels q4_1 = make_kernels<KQ4_1>();
  static const TileKernels q8_0 = make_kernels<KQ8_0>();
  switch (t) {
    case DType::Q4_0: return &q4_0;
    case DType::Q4_1: return &q4_1;
    case DType::Q8_0: return &q8_0;
    default: return nullptr;
  }
}

void quantize_row_q8(const float* x, void* out_act, int64_t n) {
  ActQ8* out = static_cast<ActQ8*>(out_act);
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / ops::kQK; ++b, x += ops::kQK) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[i]));
    }
    const float d = hmax(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);  // lanes interleaved per 128 bits
    const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p = _mm256_packs_epi16(p01, p23);
    const __m256i fixed = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].qs), fixed);
    out[b].d = d;
    out[b].s = d * static_cast<float>(sum);
  }
}

#else  // no AVX2

const TileKernels* simd_kernels_q32(DType) { return nullptr; }
void quantize_row_q8(const float* x, void* out, int64_t n) {
  ops::ref::quantize_row_q8(x, static_cast<ops::ActQ8*>(out), n);
}

#endif

}  // namespace akvq::cpu
