// AVX-512 table scores of 2-bit rows of one group (contract: ref::scores_lut in quant.h): the AVX2
// kernel (quant_lut_avx2.cpp) with 64 rows per block instead of 32. The code bytes of 64 rows are
// transposed so that one register holds byte c of 64 rows (128-bit lane h: rows 16h .. 16h + 15);
// its low and high nibbles index the query's tables 2c and 2c + 1 (the same 16 entries in every
// lane) with vpshufb, and the two int8 lookups of a row are added into its int16 sum by vpmaddubsw
// against ones: per code byte and query, one pass of these 8 instructions serves 64 rows instead
// of 32. The int16 sums are exact and the epilogue is the AVX2 kernel's fma sequence, so the
// scores are those of simd::scores_lut and ref::scores_lut bit for bit.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/avx512_target.h"
#include "cpu/simd.h"
#include "kv/quant.h"
#include "kv/quant_headers_avx512.h"

namespace akvq::kv::simd512 {

#if defined(AKVQ_HAVE_AVX512_KERNELS) && defined(AKVQ_AVX2)

namespace {

constexpr int kRows = 64;                       // rows per block
constexpr int kMaxPos = simd::kMaxLutRow / 2;   // tables (value pairs) per query

AKVQ_AVX512_BEGIN

// col[c] byte k of lane h = code byte c of row 16h + k, for the 64 rows at row0 + u·stride (16
// code bytes each): the AVX2 kernel's four rounds of byte interleaving, in each 128-bit lane.
inline void transpose64x16(const uint8_t* row0, size_t stride, __m512i* col) {
  __m512i x[16];
#pragma GCC unroll 16
  for (int u = 0; u < 16; ++u) {
    const __m512i a = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row0 + u * stride)));
    const auto row = [&](int i) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(row0 + i * stride)); };
    const __m512i b = _mm512_inserti32x4(a, row(u + 16), 1);
    const __m512i c = _mm512_inserti32x4(b, row(u + 32), 2);
    x[u] = _mm512_inserti32x4(c, row(u + 48), 3);
  }
#pragma GCC unroll 4
  for (int round = 0; round < 4; ++round) {
    __m512i y[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      y[2 * i] = _mm512_unpacklo_epi8(x[i], x[i + 8]);
      y[2 * i + 1] = _mm512_unpackhi_epi8(x[i], x[i + 8]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) x[i] = y[i];
  }
#pragma GCC unroll 16
  for (int c = 0; c < 16; ++c) _mm512_store_si512(col + c, x[c]);
}

// acc[2j] lane h = int16 sums of rows 16h .. 16h + 7, acc[2j + 1] of rows 16h + 8 .. 16h + 15, for
// the 64 rows at codes0 + u·stride (CH·16 code bytes each) and query j's tables (32-byte entries
// at tab[j]).
// request(k), k = 0..3, is called at the start of each quarter of the block's code bytes: the
// rows ahead requested a quarter at a time. All of a block's requests at its start (~40 lines)
// filled the core's miss queue: perf put 11% of this kernel's samples on the prefetch
// instructions, and a SmolLM2 decode at depth 8192 from memory ran 7% slower (bench/RESULTS.md).
template <int NQ, int CH, class Request>
inline void block_sums(const uint8_t* codes0, size_t stride, const __m256i* const* tab, __m512i* acc,
                       const Request& request) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi8(1);
#pragma GCC unroll 8
  for (int j = 0; j < 2 * NQ; ++j) acc[j] = _mm512_setzero_si512();
  for (int ch = 0; ch < CH; ++ch) {
    alignas(64) __m512i col[16];
    transpose64x16(codes0 + 16 * ch, stride, col);
#pragma GCC unroll 4
    for (int c = 0; c < 16; ++c) {
      if ((ch * 16 + c) % (4 * CH) == 0) request((ch * 16 + c) / (4 * CH));
      const __m512i x = _mm512_load_si512(col + c);
      const __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) {
        const __m256i* t = tab[j] + 32 * ch + 2 * c;
        const __m512i ta = _mm512_broadcast_i64x4(_mm256_load_si256(t));
        const __m512i tb = _mm512_broadcast_i64x4(_mm256_load_si256(t + 1));
        const __m512i a = _mm512_shuffle_epi8(ta, lo), b = _mm512_shuffle_epi8(tb, hi);
        acc[2 * j] = _mm512_add_epi16(acc[2 * j], _mm512_maddubs_epi16(ones, _mm512_unpacklo_epi8(a, b)));
        acc[2 * j + 1] = _mm512_add_epi16(acc[2 * j + 1], _mm512_maddubs_epi16(ones, _mm512_unpackhi_epi8(a, b)));
      }
    }
  }
}

// Byte offsets of rows 0..15 at `stride` bytes apart (the header gather's index).
inline __m512i row_offsets16(size_t stride) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(static_cast<int>(stride)));
}

template <int NQ, int CH>
void scores_lut_k(const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
                  const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost,
                  const RowsAhead* ahead, const LutQuery* pre) {
  const Headers16 plan = headers16_plan(stride);
  float lc[4];
  const float mid = simd::centred_levels(levels, lc);
  alignas(64) __m256i own[NQ * kMaxPos];  // tables built here when not given
  alignas(64) float tmp[8 * simd::kMaxLutRow];
  const __m256i* tab[NQ];
  float s[NQ], base[NQ], qs[NQ];
  simd::lut_queries<NQ>(mid, qsum, qsst, pre, n, own,
                        [&](int j, __m256i* t) { return simd::lut_tables(q + j * qst, n, lc, t, tmp); }, tab, s, base, qs);
  // row order of 16 rows from the two sums registers: lane h of acc[2j] then lane h of acc[2j + 1]
  const __m512i hdr_idx = row_offsets16(stride);
  const __m512i lo_idx = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);  // lanes 0, 1 (rows 0..31)
  const __m512i hi_idx = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);  // lanes 2, 3 (rows 32..63)
  alignas(64) uint8_t pad[kRows * (4 + simd::kMaxLutRow / 4)];  // the last partial block
  for (int64_t t = 0; t < n_rows; t += kRows) {
    const int64_t t_end = std::min<int64_t>(n_rows, t + kRows);
    const auto request = [&](int k) {
      request_ahead(ahead, std::min(t_end, t + 16 * k), std::min(t_end, t + 16 * (k + 1)), n_rows);
    };
    const uint8_t* r0;
    size_t rst;
    const int nr = simd::lut_block(rows, stride, t, n_rows, kRows, n, pad, r0, rst);
    __m512i acc[2 * NQ];
    block_sums<NQ, CH>(r0 + 4, rst, tab, acc, request);
    __m512 sc[4], of[4];
    // rows of a partial block are copies in pad[] (stride rst != stride)
    const __m512i idx = rst == stride ? hdr_idx : row_offsets16(rst);
    for (int h = 0; h < 4; ++h) {
      if (rst == stride) {
        headers16_rows(plan, r0 + 16 * h * rst, idx, 0xffff, sc[h], of[h]);
      } else {
        headers16(r0 + 16 * h * rst, idx, 0xffff, sc[h], of[h]);
      }
    }
    for (int j = 0; j < NQ; ++j) {
      // int16 sums of rows 0..31 and 32..63 in row order, then 16-row int32 vectors
      const __m512i w01 = _mm512_permutex2var_epi64(acc[2 * j], lo_idx, acc[2 * j + 1]);
      const __m512i w23 = _mm512_permutex2var_epi64(acc[2 * j], hi_idx, acc[2 * j + 1]);
      const __m512i i32[4] = {_mm512_cvtepi16_epi32(_mm512_castsi512_si256(w01)),
                              _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(w01, 1)),
                              _mm512_cvtepi16_epi32(_mm512_castsi512_si256(w23)),
                              _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(w23, 1))};
      const __m512 vs = _mm512_set1_ps(s[j]), vb = _mm512_set1_ps(base[j]), vq = _mm512_set1_ps(qs[j]);
      float* oj = out + j * ost + t;
      alignas(64) float ob[kRows];
      for (int h = 0; h < 4; ++h) {
        const __m512 d = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i32[h]), vs, vb);
        const __m512 o = _mm512_fmadd_ps(sc[h], d, _mm512_mul_ps(of[h], vq));
        if (nr == kRows) {
          _mm512_storeu_ps(oj + 16 * h, o);
        } else {
          _mm512_store_ps(ob + 16 * h, o);
        }
      }
      if (nr < kRows) std::memcpy(oj, ob, sizeof(float) * nr);
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

AKVQ_AVX512_END

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

#else  // no AVX-512 table kernels in this build: the AVX2 / NEON ones (RowCodec does not ask)

void scores_lut(const float* levels, const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                const RowsAhead* ahead, const LutQuery* pre) {
  simd::scores_lut(levels, q, q_stride, qsum, qsum_stride, nq, n, rows, stride, n_rows, out, out_stride, ahead, pre);
}

#endif

}  // namespace akvq::kv::simd512
