// AVX2 scores of 2-bit rows of one group from 8-bit pair tables (contract: ref::scores_lut in
// quant.h). Per query, table p holds the 16 values q[2p]·L'[c0] + q[2p+1]·L'[c1] (L' the centred
// levels) rounded to int8 at one scale. 32 rows are taken at a time: their code bytes are
// transposed so that one register holds byte c of 32 rows (lane h: rows 16h..16h+15), its low
// and high nibbles index tables 2c and 2c+1 with vpshufb, and the two int8 lookups of a row are
// added into its int16 sum by vpmaddubsw against ones. Per row and query that is ~4 integer ops
// per 4 values instead of ~4 FMAs and the level decode of the float kernels.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/simd.h"
#include "kv/quant.h"
#include "kv/quant_headers_avx2.h"

namespace akvq::kv::simd {

#ifdef AKVQ_AVX2

namespace {

constexpr int kRows = 32;                 // rows per block
constexpr int kMaxPos = kMaxLutRow / 2;   // tables (value pairs) per query

// col[c] byte k of lane h = code byte c of row 16h + k, for the 32 rows at row0 + u·stride (16 code
// bytes each). Four rounds of interleaving the bytes of registers i and i + 8: each round rotates
// the 8-bit (register, byte) address of every byte left by one, so four rounds transpose.
inline void transpose32x16(const uint8_t* row0, size_t stride, __m256i* col) {
  __m256i x[16];
#pragma GCC unroll 16
  for (int u = 0; u < 16; ++u) {
    x[u] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(row0 + (u + 16) * stride),
                               reinterpret_cast<const __m128i*>(row0 + u * stride));
  }
#pragma GCC unroll 4
  for (int round = 0; round < 4; ++round) {
    __m256i y[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      y[2 * i] = _mm256_unpacklo_epi8(x[i], x[i + 8]);
      y[2 * i + 1] = _mm256_unpackhi_epi8(x[i], x[i + 8]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) x[i] = y[i];
  }
#pragma GCC unroll 16
  for (int c = 0; c < 16; ++c) _mm256_store_si256(col + c, x[c]);
}

}  // namespace

float lut_tables(const float* q, int n, const float* lc, void* tab_bytes, float* tmp) {
  __m256i* tab = static_cast<__m256i*>(tab_bytes);
  const __m256 l0 = _mm256_setr_ps(lc[0], lc[1], lc[2], lc[3], lc[0], lc[1], lc[2], lc[3]);  // L'[i & 3]
  const __m256 l1lo = _mm256_setr_ps(lc[0], lc[0], lc[0], lc[0], lc[1], lc[1], lc[1], lc[1]);  // L'[i >> 2], i < 8
  const __m256 l1hi = _mm256_setr_ps(lc[2], lc[2], lc[2], lc[2], lc[3], lc[3], lc[3], lc[3]);  // i >= 8
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
  for (int p = 0; p < n / 2; ++p) {
    const __m256 a = _mm256_set1_ps(q[2 * p]), b = _mm256_set1_ps(q[2 * p + 1]);
    const __m256 al0 = _mm256_mul_ps(a, l0);
    const __m256 lo = _mm256_fmadd_ps(b, l1lo, al0), hi = _mm256_fmadd_ps(b, l1hi, al0);
    _mm256_store_ps(tmp + 16 * p, lo);
    _mm256_store_ps(tmp + 16 * p + 8, hi);
    amax = _mm256_max_ps(amax, _mm256_max_ps(_mm256_and_ps(lo, abs_mask), _mm256_and_ps(hi, abs_mask)));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(lo, hi, _CMP_UNORD_Q));  // all ones where either is NaN
  }
  alignas(32) float m[8];
  _mm256_store_ps(m, amax);
  float mx = m[0];
  for (int i = 1; i < 8; ++i) mx = std::max(mx, m[i]);
  if (_mm256_movemask_ps(nan) != 0 || !lut_scale_usable(mx)) {
    for (int p = 0; p < n / 2; ++p) _mm256_store_si256(tab + p, _mm256_setzero_si256());
    return 0.0f;
  }
  const __m256 vinv = _mm256_set1_ps(127.0f / mx);
  for (int p = 0; p < n / 2; ++p) {
    const __m256i lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(tmp + 16 * p), vinv));  // nearest, ties even
    const __m256i hi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(tmp + 16 * p + 8), vinv));
    // int16 [e0-3 e8-11 | e4-7 e12-15] -> [e0-7 | e8-15] -> bytes e0-15 in lane 0 -> both lanes
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), _MM_SHUFFLE(3, 1, 2, 0));
    const __m256i e = _mm256_packs_epi16(w, _mm256_permute2x128_si256(w, w, 0x01));
    _mm256_store_si256(tab + p, _mm256_permute2x128_si256(e, e, 0x00));
  }
  return mx / 127.0f;
}

namespace {

// acc[2j] lanes = int16 sums of rows [0..7 | 16..23], acc[2j+1] of rows [8..15 | 24..31], for the
// 32 rows at codes0 + u·stride (CH·16 code bytes each) and query j's tables tab[j].
template <int NQ, int CH>
inline void block_sums(const uint8_t* codes0, size_t stride, const __m256i* const* tab, __m256i* acc) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi8(1);
#pragma GCC unroll 8
  for (int j = 0; j < 2 * NQ; ++j) acc[j] = _mm256_setzero_si256();
  for (int ch = 0; ch < CH; ++ch) {
    alignas(32) __m256i col[16];
    transpose32x16(codes0 + 16 * ch, stride, col);
#pragma GCC unroll 4
    for (int c = 0; c < 16; ++c) {
      const __m256i x = _mm256_load_si256(col + c);
      const __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) {
        const __m256i* t = tab[j] + 32 * ch + 2 * c;
        const __m256i a = _mm256_shuffle_epi8(_mm256_load_si256(t), lo);
        const __m256i b = _mm256_shuffle_epi8(_mm256_load_si256(t + 1), hi);
        acc[2 * j] = _mm256_add_epi16(acc[2 * j], _mm256_maddubs_epi16(ones, _mm256_unpacklo_epi8(a, b)));
        acc[2 * j + 1] = _mm256_add_epi16(acc[2 * j + 1], _mm256_maddubs_epi16(ones, _mm256_unpackhi_epi8(a, b)));
      }
    }
  }
}

template <int NQ, int CH>
void scores_lut_k(const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
                  const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost,
                  const RowsAhead* ahead, const LutQuery* pre) {
  float lc[4];
  const float mid = centred_levels(levels, lc);
  alignas(32) __m256i own[NQ * kMaxPos];  // tables built here when not given
  alignas(32) float tmp[8 * kMaxLutRow];
  const __m256i* tab[NQ];
  float s[NQ], base[NQ], qs[NQ];
  lut_queries<NQ>(mid, qsum, qsst, pre, n, own,
                  [&](int j, __m256i* t) { return lut_tables(q + j * qst, n, lc, t, tmp); }, tab, s, base, qs);
  alignas(32) uint8_t pad[kRows * (4 + kMaxLutRow / 4)];  // the last partial block
  for (int64_t t = 0; t < n_rows; t += kRows) {
    request_ahead(ahead, t, std::min<int64_t>(n_rows, t + kRows), n_rows);
    const uint8_t* r0;
    size_t rst;
    const int nr = lut_block(rows, stride, t, n_rows, kRows, n, pad, r0, rst);
    __m256i acc[2 * NQ];
    block_sums<NQ, CH>(r0 + 4, rst, tab, acc);
    __m256 sc[4], of[4];
    for (int h = 0; h < 4; ++h) headers8(r0 + 8 * h * rst, rst, sc[h], of[h]);
    for (int j = 0; j < NQ; ++j) {
      // 8-row sums: rows 0-7, 8-15, 16-23, 24-31
      const __m256i i32[4] = {_mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc[2 * j])),
                              _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc[2 * j + 1])),
                              _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc[2 * j], 1)),
                              _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc[2 * j + 1], 1))};
      const __m256 vs = _mm256_set1_ps(s[j]), vb = _mm256_set1_ps(base[j]), vq = _mm256_set1_ps(qs[j]);
      __m256 o[4];
      for (int h = 0; h < 4; ++h) {
        const __m256 d = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32[h]), vs, vb);
        o[h] = _mm256_fmadd_ps(sc[h], d, _mm256_mul_ps(of[h], vq));
      }
      float* oj = out + j * ost + t;
      if (nr == kRows) {  // stored in place (a copy through memcpy was 2.7% of an akvq2 decode step)
        for (int h = 0; h < 4; ++h) _mm256_storeu_ps(oj + 8 * h, o[h]);
      } else {
        alignas(32) float ob[kRows];
        for (int h = 0; h < 4; ++h) _mm256_store_ps(ob + 8 * h, o[h]);
        std::memcpy(oj, ob, sizeof(float) * nr);
      }
    }
  }
}

template <int NQ>
void scores_lut_nq(const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
                   const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost, const RowsAhead* ahead,
                   const LutQuery* pre) {
  switch (n / 64) {
    case 1: return scores_lut_k<NQ, 1>(levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost, ahead, pre);
    case 2: return scores_lut_k<NQ, 2>(levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost, ahead, pre);
    case 3: return scores_lut_k<NQ, 3>(levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost, ahead, pre);
    default: return scores_lut_k<NQ, 4>(levels, q, qst, qsum, qsst, n, rows, stride, n_rows, out, ost, ahead, pre);
  }
}

}  // namespace

void scores_lut(const float* levels, const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                const RowsAhead* ahead, const LutQuery* pre) {
  switch (nq) {
    case 1: return scores_lut_nq<1>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
    case 2: return scores_lut_nq<2>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
    case 3: return scores_lut_nq<3>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
    default:
      return scores_lut_nq<4>(levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride, ahead, pre);
  }
}

size_t lut_query_bytes(int n) {
  return static_cast<size_t>(n / 2) * 32;
}

float lut_prepare(const float* levels, const float* q, int n, void* tab) {
  float lc[4];
  centred_levels(levels, lc);
  alignas(32) float tmp[8 * kMaxLutRow];
  return lut_tables(q, n, lc, tab, tmp);
}

#elif !defined(AKVQ_NEON)  // neither AVX2 nor NEON (quant_lut_neon.cpp): RowCodec never asks

size_t lut_query_bytes(int) {
  return 0;
}
float lut_prepare(const float*, const float*, int, void*) {
  return 0.0f;
}

void scores_lut(const float* levels, const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                const RowsAhead* ahead, const LutQuery*) {  // the references build their own tables
  request_ahead(ahead, 0, n_rows, n_rows);
  for (int j = 0; j < nq; ++j) {
    ref::scores_lut(levels, q + j * q_stride, qsum[j * qsum_stride], n, rows, stride, n_rows, out + j * out_stride);
  }
}

#endif

}  // namespace akvq::kv::simd
