// AVX2 tiles for the 32-value block types Q4_0, Q4_1 and Q8_0 against Q16 activation rows
// (int16 per block of 32, ops/qblocks.h); the block facts, the tile operands and the table are
// shared (qgemm_q32_tiles.h), this file holds the intrinsics. A weight block is unpacked once into
// two registers of 16 int16 lanes (values 0-15 and 16-31) and multiplied with madd (int16 x int16
// -> int32 pairs).
// Integer bounds per block: |w| <= 15 (Q4 nibbles) or 128 (Q8_0), |x| <= 32767, so a block sum is
// at most 32 * 128 * 32767 < 2^28 and every partial sum fits int32. Each block's integer sum is
// converted to f32 and scaled by d_w * d_x. The offset term of Q4_0 / Q4_1 (m * d_x * sum(q_x) =
// m * s) uses the exact per-block sums s of the activation rows.
#include <cstring>

#include "cpu/prefetch.h"
#include "cpu/qgemm.h"
#include "cpu/qgemm_q32_tiles.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

// Software prefetch of the weight rows ahead of the decode loop (cpu/simd.h: kAvx2PrefetchAhead).
constexpr bool kPrefetch = true;

// Weight types. unpack: block -> lo (values 0-15), hi (values 16-31) as int16 lanes.
template <class B>
struct KQ4 : B {  // Q4_0, Q4_1: value j in the low nibble of byte j, j + 16 in the high one
  static inline void unpack(const uint8_t* blk, __m256i& lo, __m256i& hi) {
    const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + B::kQsOff)));
    lo = _mm256_and_si256(v, _mm256_set1_epi16(15));
    hi = _mm256_srli_epi16(v, 4);
  }
};
using KQ4_0 = KQ4<q32::Q4_0>;
using KQ4_1 = KQ4<q32::Q4_1>;

struct KQ8_0 : q32::Q8_0 {
  static inline void unpack(const uint8_t* blk, __m256i& lo, __m256i& hi) {
    lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQsOff)));
    hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQsOff + 16)));
  }
};

// Which lane of the 4 bytes at the block start, read as two fp16, carries the offset multiplier
// (Q4_1: m in lane 1; Q4_0: d in lane 0); -1: no offset term.
template <class K>
constexpr int kMinLane = K::kMinOff < 0 ? -1 : K::kMinOff / 2;

// The 4 bytes at offset off of R rows, converted as fp16 pairs: lane 2r = d_r, lane 2r+1 = m_r
// (Q4_1) or unused. All three block types start with the fp16 d.
template <int R>
inline __m256 scales(const uint8_t* const* wr, int64_t off) {
  int32_t v[4] = {0, 0, 0, 0};
  for (int r = 0; r < R; ++r) std::memcpy(&v[r], wr[r] + off, 4);
  return _mm256_cvtph_ps(_mm_setr_epi32(v[0], v[1], v[2], v[3]));
}

inline __m256i block_dot(__m256i lo, __m256i hi, const int16_t* xq) {
  return _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq))),
                          _mm256_madd_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 16))));
}

// p[0..3]: 8 int32 lanes each -> [sum of p0, p1, p2, p3 over lanes 0-3 | same over lanes 4-7].
inline __m256i reduce4(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
  const __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
  const __m256i c = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(a, c), _mm256_unpackhi_epi64(a, c));
}

// Decode tile (one token, R rows): the activation block is loaded once for all rows; each row's
// integer block dot is reduced exactly (lanes = rows) and added as one fma of float(dot) with
// d_w * d_x, the same arithmetic per (row, token) as the multi-token tiles, so a token's result
// does not depend on the tile it lands in (batch-invariant: decode == prefill bit for bit).
// Two blocks per iteration: one prefetch per row per 40 bytes, no branches.
template <class K, int R>
inline void t1_block(const uint8_t* const* wr, int64_t off, const int16_t* xq, float xd, float xs, __m128& acc,
                     __m128& accm) {
  const __m256 A = scales<R>(wr, off);  // lanes 2r: d_r, 2r+1: m_r
  const __m128 Dw = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(A, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0)));
  if (kMinLane<K> >= 0) {
    const int ml = kMinLane<K> > 0 ? 1 : 0;
    const __m128 Mw =
        _mm256_castps256_ps128(_mm256_permutevar8x32_ps(A, _mm256_setr_epi32(ml, 2 + ml, 4 + ml, 6 + ml, 0, 0, 0, 0)));
    accm = _mm_fmadd_ps(Mw, _mm_set1_ps(xs), accm);
  }
  const __m256i X0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  const __m256i X1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 16));
  __m256i p[4];
  for (int r = 0; r < 4; ++r) {
    if (r < R) {
      __m256i lo, hi;
      K::unpack(wr[r] + off, lo, hi);
      p[r] = _mm256_add_epi32(_mm256_madd_epi16(lo, X0), _mm256_madd_epi16(hi, X1));
    } else {
      p[r] = _mm256_setzero_si256();
    }
  }
  const __m256i h = reduce4(p[0], p[1], p[2], p[3]);
  const __m128i c = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  acc = _mm_fmadd_ps(_mm_cvtepi32_ps(c), _mm_mul_ps(Dw, _mm_set1_ps(xd)), acc);
}

// This ISA's part of q32::Tiles: t1 (one token), multi (2..4 tokens), defined below.
struct Avx2 {
  template <class K, int R>
  static void t1(const q32::Operands<R, 1>& o, float* y);
  template <class K, int R, int T>
  static void multi(const q32::Operands<R, T>& o, float* y, int64_t ldy);
};

template <class K, int R>
void Avx2::t1(const q32::Operands<R, 1>& o, float* y) {
  __m128 acc = _mm_setzero_ps(), accm = _mm_setzero_ps();  // lanes = rows
  int64_t b = 0;
  for (; b + 2 <= o.nb; b += 2) {
    if (kPrefetch) {
      for (int r = 0; r < R; ++r) prefetch_line(o.wr[r] + b * K::kBytes + kAvx2PrefetchAhead);
    }
    t1_block<K, R>(o.wr, b * K::kBytes, o.xq[0] + b * ops::kQK, o.xd[b], o.xs[b], acc, accm);
    t1_block<K, R>(o.wr, (b + 1) * K::kBytes, o.xq[0] + (b + 1) * ops::kQK, o.xd[b + 1], o.xs[b + 1], acc, accm);
  }
  if (b < o.nb) t1_block<K, R>(o.wr, b * K::kBytes, o.xq[0] + b * ops::kQK, o.xd[b], o.xs[b], acc, accm);
  alignas(16) float a[4], m[4];
  _mm_store_ps(a, acc);
  _mm_store_ps(m, accm);
  for (int r = 0; r < R; ++r) y[r] = a[r] + K::kMinMul * m[r];
}

// Several tokens (2 <= T <= 4), R rows. Per block, each row's weights are unpacked once for the
// T tokens; the T integer dots of a row are reduced to one register (lanes = tokens, two halves)
// and the rows are taken in pairs, so that one cvt + one fma applies the scales d_w * d_x of two
// rows x four tokens: the accumulators are one register per row pair (no spills at R = T = 4).
// The activation blocks come from L1 for each row; their scales from the transposed d_tr / s_tr.
template <class K, int R, int T>
void Avx2::multi(const q32::Operands<R, T>& o, float* y, int64_t ldy) {
  static_assert(T >= 2 && T <= 4, "multi: 2..4 tokens");
  constexpr int P = (R + 1) / 2;  // row pairs (the last one may be a single row)
  __m256 acc[P], accm[P];         // lanes: [row 2p: tokens 0-3 | row 2p+1: tokens 0-3]
  __m256i sel_d[P], sel_m[P];
  for (int p = 0; p < P; ++p) {
    acc[p] = accm[p] = _mm256_setzero_ps();
    const int r1 = 2 * p + 1 < R ? 2 * p + 1 : 2 * p;
    sel_d[p] = _mm256_setr_epi32(4 * p, 4 * p, 4 * p, 4 * p, 2 * r1, 2 * r1, 2 * r1, 2 * r1);
    const int ml = kMinLane<K> > 0 ? kMinLane<K> : 0;
    sel_m[p] = _mm256_add_epi32(sel_d[p], _mm256_set1_epi32(ml));
  }
  for (int64_t b = 0; b < o.nb; ++b) {
    const int64_t off = b * K::kBytes;
    const __m256 A = scales<R>(o.wr, off);
    const __m128 dx4 = _mm_loadu_ps(o.d_tr + b * o.tr_stride);  // (_mm256_broadcast_ps kept acc in memory)
    const __m256 DX = _mm256_set_m128(dx4, dx4);
    for (int p = 0; p < P; ++p) {
      __m256i h[2];
      for (int k = 0; k < 2; ++k) {
        const int r = 2 * p + k;
        if (r >= R) {
          h[k] = _mm256_setzero_si256();
          continue;
        }
        __m256i lo, hi;
        K::unpack(o.wr[r] + off, lo, hi);
        __m256i q[4];
        for (int t = 0; t < 4; ++t) q[t] = t < T ? block_dot(lo, hi, o.xq[t] + b * ops::kQK) : _mm256_setzero_si256();
        h[k] = reduce4(q[0], q[1], q[2], q[3]);
      }
      const __m256i c =
          _mm256_add_epi32(_mm256_permute2x128_si256(h[0], h[1], 0x20), _mm256_permute2x128_si256(h[0], h[1], 0x31));
      const __m256 sc = _mm256_mul_ps(_mm256_permutevar8x32_ps(A, sel_d[p]), DX);
      acc[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), sc, acc[p]);
      if (kMinLane<K> >= 0) {
        const __m128 sx4 = _mm_loadu_ps(o.s_tr + b * o.tr_stride);
        const __m256 SX = _mm256_set_m128(sx4, sx4);
        accm[p] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(A, sel_m[p]), SX, accm[p]);
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    alignas(32) float a[8], m[8];
    _mm256_store_ps(a, acc[p]);
    _mm256_store_ps(m, accm[p]);
    for (int k = 0; k < 2 && 2 * p + k < R; ++k) {
      for (int t = 0; t < T; ++t) y[t * ldy + 2 * p + k] = a[4 * k + t] + K::kMinMul * m[4 * k + t];
    }
  }
}

}  // namespace

const TileKernels* simd_kernels_q32(DType t) {
  return find_tiles<q32::Tiles, Avx2, KQ4_0, KQ4_1, KQ8_0>(t);
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (qgemm_q32_neon.cpp)

const TileKernels* simd_kernels_q32(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
