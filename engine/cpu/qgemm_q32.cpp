// AVX2 tiles for the 32-value block types Q4_0, Q4_1 and Q8_0 against Q16 activation rows
// (int16 per block of 32, ops/qblocks.h). A weight block is unpacked once into two registers of
// 16 int16 lanes (values 0-15 and 16-31) and multiplied with madd (int16 x int16 -> int32 pairs).
// Integer bounds per block: |w| <= 15 (Q4 nibbles) or 128 (Q8_0), |x| <= 32767, so a block sum is
// at most 32 * 128 * 32767 < 2^28 and every partial sum fits int32. Each block's integer sum is
// converted to f32 and scaled by d_w * d_x. The offset term of Q4_0 / Q4_1 (m * d_x * sum(q_x) =
// m * s) uses the exact per-block sums s of the activation rows.
#include <cstring>

#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

// Software prefetch of the weight rows ahead of the decode loop (decode streams every weight from
// DRAM once per token). Past a row's end this fetches the start of the next rows, which the next
// tiles read.
constexpr bool kPrefetch = true;
// Distance in bytes: 512 / 1024 / 2048 measured 8.2 / 7.2 / 6.7 ms per SmolLM2 decode step.
constexpr int kPrefetchAhead = 2048;

// Weight types. unpack: block -> lo (values 0-15), hi (values 16-31) as int16 lanes.
// kMinLane: which lane of the 4 bytes at the block start, read as two fp16, carries the offset
// multiplier (Q4_1: m in lane 1; Q4_0: d in lane 0, offset -8 d); -1: no offset term.
struct KQ4_0 {
  static constexpr int64_t kBytes = sizeof(ops::BlockQ4_0);
  static constexpr int kMinLane = 0;
  static constexpr float kMinMul = -8.0f;
  static inline void unpack(const uint8_t* blk, __m256i& lo, __m256i& hi) {
    const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
    lo = _mm256_and_si256(v, _mm256_set1_epi16(15));
    hi = _mm256_srli_epi16(v, 4);
  }
};

struct KQ4_1 {
  static constexpr int64_t kBytes = sizeof(ops::BlockQ4_1);
  static constexpr int kMinLane = 1;
  static constexpr float kMinMul = 1.0f;
  static inline void unpack(const uint8_t* blk, __m256i& lo, __m256i& hi) {
    const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4)));
    lo = _mm256_and_si256(v, _mm256_set1_epi16(15));
    hi = _mm256_srli_epi16(v, 4);
  }
};

struct KQ8_0 {
  static constexpr int64_t kBytes = sizeof(ops::BlockQ8_0);
  static constexpr int kMinLane = -1;
  static constexpr float kMinMul = 0.0f;
  static inline void unpack(const uint8_t* blk, __m256i& lo, __m256i& hi) {
    lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
    hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18)));
  }
};

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

// Decode tile (one token, R rows): the activation block is loaded once for all rows, the fp16
// scales of the R rows are converted together and the offset term is one vector fma (lanes =
// rows). Two blocks per iteration: one prefetch per row per 40 bytes, no branches.
template <class K, int R>
inline void t1_block(const uint8_t* const* wr, int64_t off, const int16_t* xq, float xd, float xs, __m256* acc,
                     __m256& accm) {
  const __m256 A = scales<R>(wr, off);
  if (K::kMinLane >= 0) accm = _mm256_fmadd_ps(A, _mm256_set1_ps(xs), accm);
  const __m256 D = _mm256_mul_ps(A, _mm256_set1_ps(xd));
  // lanes 2r of D -> both 128-bit halves, then an in-lane broadcast per row
  const __m256 D01 = _mm256_permute2f128_ps(D, D, 0x00), D23 = _mm256_permute2f128_ps(D, D, 0x11);
  const __m256i X0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  const __m256i X1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 16));
  for (int r = 0; r < R; ++r) {
    __m256i lo, hi;
    K::unpack(wr[r] + off, lo, hi);
    const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(lo, X0), _mm256_madd_epi16(hi, X1));
    const __m256 src = r < 2 ? D01 : D23;
    const __m256 sc = (r % 2 == 0) ? _mm256_permute_ps(src, 0x00) : _mm256_permute_ps(src, 0xaa);
    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[r]);
  }
}

template <class K, int R>
void tile_t1(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t) {
  const int64_t nb = n_in / ops::kQK;
  const uint8_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + r * w_stride;
  const uint8_t* row = x.data + t0 * x.stride;
  const int16_t* xq = ops::act_q16_qs(row);
  const float* xd = ops::act_q16_d(row, n_in);
  const float* xs = ops::act_q16_s(row, n_in);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  __m256 accm = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    if (kPrefetch) {
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(wr[r] + b * K::kBytes + kPrefetchAhead), _MM_HINT_T0);
    }
    t1_block<K, R>(wr, b * K::kBytes, xq + b * ops::kQK, xd[b], xs[b], acc, accm);
    t1_block<K, R>(wr, (b + 1) * K::kBytes, xq + (b + 1) * ops::kQK, xd[b + 1], xs[b + 1], acc, accm);
  }
  if (b < nb) t1_block<K, R>(wr, b * K::kBytes, xq + b * ops::kQK, xd[b], xs[b], acc, accm);
  alignas(32) float m[8];
  _mm256_store_ps(m, accm);
  for (int r = 0; r < R; ++r) {
    y[r] = hsum(acc[r]) + K::kMinMul * m[2 * r + (K::kMinLane > 0 ? 1 : 0)];
  }
}

// p[0..3]: 8 int32 lanes each -> [sum of p0, p1, p2, p3 over lanes 0-3 | same over lanes 4-7].
inline __m256i reduce4(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
  const __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
  const __m256i c = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(a, c), _mm256_unpackhi_epi64(a, c));
}

// Several tokens (2 <= T <= 4), R rows. Per block, each row's weights are unpacked once for the
// T tokens; the T integer dots of a row are reduced to one register (lanes = tokens, two halves)
// and the rows are taken in pairs, so that one cvt + one fma applies the scales d_w * d_x of two
// rows x four tokens: the accumulators are one register per row pair (no spills at R = T = 4).
// The activation blocks come from L1 for each row; their scales from the transposed d_tr / s_tr.
template <class K, int R, int T>
void tile_q(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  static_assert(T >= 2 && T <= 4, "tile_q: 2..4 tokens");
  constexpr int P = (R + 1) / 2;  // row pairs (the last one may be a single row)
  const int64_t nb = n_in / ops::kQK;
  const uint8_t* wr[R];
  const int16_t* xq[T];
  for (int r = 0; r < R; ++r) wr[r] = w + r * w_stride;
  for (int t = 0; t < T; ++t) xq[t] = ops::act_q16_qs(x.data + (t0 + t) * x.stride);
  const float* d_tr = x.d_tr + t0;
  const float* s_tr = x.s_tr + t0;
  __m256 acc[P], accm[P];  // lanes: [row 2p: tokens 0-3 | row 2p+1: tokens 0-3]
  __m256i sel_d[P], sel_m[P];
  for (int p = 0; p < P; ++p) {
    acc[p] = accm[p] = _mm256_setzero_ps();
    const int r1 = 2 * p + 1 < R ? 2 * p + 1 : 2 * p;
    sel_d[p] = _mm256_setr_epi32(4 * p, 4 * p, 4 * p, 4 * p, 2 * r1, 2 * r1, 2 * r1, 2 * r1);
    const int ml = K::kMinLane > 0 ? K::kMinLane : 0;
    sel_m[p] = _mm256_add_epi32(sel_d[p], _mm256_set1_epi32(ml));
  }
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t off = b * K::kBytes;
    const __m256 A = scales<R>(wr, off);
    const __m256 DX = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(d_tr + b * x.tr_stride));
    for (int p = 0; p < P; ++p) {
      __m256i h[2];
      for (int k = 0; k < 2; ++k) {
        const int r = 2 * p + k;
        if (r >= R) {
          h[k] = _mm256_setzero_si256();
          continue;
        }
        __m256i lo, hi;
        K::unpack(wr[r] + off, lo, hi);
        __m256i q[4];
        for (int t = 0; t < 4; ++t) q[t] = t < T ? block_dot(lo, hi, xq[t] + b * ops::kQK) : _mm256_setzero_si256();
        h[k] = reduce4(q[0], q[1], q[2], q[3]);
      }
      const __m256i c =
          _mm256_add_epi32(_mm256_permute2x128_si256(h[0], h[1], 0x20), _mm256_permute2x128_si256(h[0], h[1], 0x31));
      const __m256 sc = _mm256_mul_ps(_mm256_permutevar8x32_ps(A, sel_d[p]), DX);
      acc[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), sc, acc[p]);
      if (K::kMinLane >= 0) {
        const __m256 SX = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(s_tr + b * x.tr_stride));
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

template <class K>
TileKernels make_kernels() {
  TileKernels k;
  k.fn[0][0] = tile_t1<K, 1>;
  k.fn[1][0] = tile_t1<K, 2>;
  k.fn[2][0] = tile_t1<K, 3>;
  k.fn[3][0] = tile_t1<K, 4>;
  k.fn[0][1] = tile_q<K, 1, 2>;
  k.fn[1][1] = tile_q<K, 2, 2>;
  k.fn[2][1] = tile_q<K, 3, 2>;
  k.fn[3][1] = tile_q<K, 4, 2>;
  k.fn[0][2] = tile_q<K, 1, 3>;
  k.fn[1][2] = tile_q<K, 2, 3>;
  k.fn[2][2] = tile_q<K, 3, 3>;
  k.fn[3][2] = tile_q<K, 4, 3>;
  k.fn[0][3] = tile_q<K, 1, 4>;
  k.fn[1][3] = tile_q<K, 2, 4>;
  k.fn[2][3] = tile_q<K, 3, 4>;
  k.fn[3][3] = tile_q<K, 4, 4>;
  k.pref_r1 = 4;
  k.pref_r = 4;
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

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (qgemm_q32_neon.cpp)

const TileKernels* simd_kernels_q32(DType) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
