// GQA decode row kernels over lists of fp16 rows, AVX-512 where it runs (contracts:
// attend_rows_avx512.h). Per fp16 row of hd = 64
// values and R = 3 heads, the portable kernels spend 8 conversions and 24 FMAs (8 lanes) on the
// scores and as many on the values; these spend 4 and 12 (in cache, the attention of a SmolLM2
// batched step, 9 heads on 3 KV heads of 64, 66 -> 56 us; from memory it waits on the rows' loads
// either way: bench/RESULTS.md).
#include "kv/attend_rows_avx512.h"

#include "cpu/avx512_target.h"
#include "cpu/isa.h"
#include "kv/attend_tile.h"

namespace akvq::kv::tile512 {

#if defined(AKVQ_HAVE_AVX512_KERNELS)

namespace {

AKVQ_AVX512_BEGIN

inline __m512 load16h(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m256 load8h(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// x[r] = the portable kernel's a0 + a1 of row r against the fp16 row kj (hd = HD where HD > 0,
// a compile-time head size; else hd_rt): the 16-lane FMA chain
// over the 16-value steps (lanes 0..7 are a0, lanes 8..15 a1), the 8-value tail FMA'd into the low
// half (a0), then the halves added.
template <int R, int HD>
inline void lane_sums(const float* q, int ldq, const uint16_t* kj, int hd_rt, __m256* x) {
  const int hd = HD > 0 ? HD : hd_rt;
  const int d16 = hd / 16 * 16;
  __m512 z[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) z[r] = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int d = 0; d < d16; d += 16) {
    const __m512 k = load16h(kj + d);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) z[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * ldq + d), k, z[r]);
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    __m256 a0 = _mm512_castps512_ps256(z[r]);
    const __m256 a1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z[r]), 1));
    if (d16 < hd) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + d16), load8h(kj + d16), a0);
    x[r] = _mm256_add_ps(a0, a1);
  }
}

// Scores of R rows against n fp16 rows: x = lane_sums, whose 8 lanes are reduced as
// ((0+1) + (2+3)) + ((4+5) + (6+7)) (tile::scores_rows_h's horizontal adds). Tokens go 8 at a
// time per row: two rounds of horizontal adds over token pairs leave, for tokens 0..3 (A) and
// 4..7 (B), lane t = ((0+1) + (2+3)) of token t and lane 4 + t = ((4+5) + (6+7)); the low
// halves of A and B side by side plus their high halves are the 8 scores, stored at once. The
// remaining tokens reduce 4 rows at once, as the portable kernel does.
template <int R, int HD>
void scores_rows(const float* q, int ldq, const uint16_t* const* row, int n, int hd, float* s, int lds,
                 const tile::Ahead& ahead) {
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 h[4][R];  // [token pair][row] hadd(x of token 2p, x of token 2p + 1)
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      tile::request_ahead(ahead, j + 2 * p, j + 2 * p + 2);
      __m256 x0[R], x1[R];
      lane_sums<R, HD>(q, ldq, row[j + 2 * p], hd, x0);
      lane_sums<R, HD>(q, ldq, row[j + 2 * p + 1], hd, x1);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) h[p][r] = _mm256_hadd_ps(x0[r], x1[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_hadd_ps(h[0][r], h[1][r]), b = _mm256_hadd_ps(h[2][r], h[3][r]);
      const __m256 lo = _mm256_permute2f128_ps(a, b, 0x20), hi = _mm256_permute2f128_ps(a, b, 0x31);
      _mm256_storeu_ps(s + r * lds + j, _mm256_add_ps(lo, hi));
    }
  }
  for (; j < n; ++j) {
    tile::request_ahead(ahead, j, j + 1);
    __m256 x[4];
    lane_sums<R, HD>(q, ldq, row[j], hd, x);
#pragma GCC unroll 4
    for (int r = R; r < 4; ++r) x[r] = x[0];
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(x[0], x[1]), _mm256_hadd_ps(x[2], x[3]));
    alignas(16) float t[4];
    _mm_store_ps(t, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) s[r * lds + j] = t[r];
  }
  tile::request_ahead(ahead, n, ahead.n);  // a next block longer than this one (a masked tail)
}

// acc[r * lda + d0 + 0:16 NV] += sum_j p[r * ldp + j] * row[j][d0 + 0:16 NV] for r < R.
template <int R, int NV>
void pv_chunk(const float* p, int ldp, int n, const uint16_t* const* row, int d0, float* acc, int lda) {
  __m512 a[R][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) a[r][c] = _mm512_loadu_ps(acc + r * lda + d0 + 16 * c);
  }
  for (int j = 0; j < n; ++j) {
    const uint16_t* vj = row[j] + d0;
    __m512 pj[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) pj[r] = _mm512_set1_ps(p[r * ldp + j]);
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) {
      const __m512 v = load16h(vj + 16 * c);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) a[r][c] = _mm512_fmadd_ps(pj[r], v, a[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(acc + r * lda + d0 + 16 * c, a[r][c]);
  }
}

// The 8-value tail of the values (hd = 16 m + 8).
template <int R>
void pv_tail8(const float* p, int ldp, int n, const uint16_t* const* row, int d0, float* acc, int lda) {
  __m256 a[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_ps(acc + r * lda + d0);
  for (int j = 0; j < n; ++j) {
    const __m256 v = load8h(row[j] + d0);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(_mm256_set1_ps(p[r * ldp + j]), v, a[r]);
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + r * lda + d0, a[r]);
}

// R x NV accumulators + NV values + R weights within the 32 registers: 64 values per pass.
template <int R>
void pv_rows(const float* p, int ldp, int n, const uint16_t* const* row, int hd, float* acc, int lda) {
  int d = 0;
  for (; d + 64 <= hd; d += 64) pv_chunk<R, 4>(p, ldp, n, row, d, acc, lda);
  for (; d + 16 <= hd; d += 16) pv_chunk<R, 1>(p, ldp, n, row, d, acc, lda);
  if (d < hd) pv_tail8<R>(p, ldp, n, row, d, acc, lda);
}

AKVQ_AVX512_END

}  // namespace

#endif

bool active() {
#if defined(AKVQ_HAVE_AVX512_KERNELS)
  return cpu::active_isa() == cpu::Isa::Avx512;
#else
  return false;
#endif
}

void scores_rows_h(int rows, const float* q, int ldq, const uint16_t* const* row, int n, int hd, float* s, int lds,
                   const tile::Ahead& ahead) {
#if defined(AKVQ_HAVE_AVX512_KERNELS)
  if (active()) {
    // The common head sizes as compile-time constants, so that the lane sums unroll (SmolLM2's 64:
    // a batch-8 step +1.3%, the attention in cache 5-20%, bench/RESULTS.md).
    tile::in_row_calls(rows, [&](auto R, int r) {
      const tile::Ahead a = r == 0 ? ahead : tile::Ahead{};
      if (hd == 64) {
        scores_rows<R(), 64>(q + r * ldq, ldq, row, n, hd, s + r * lds, lds, a);
      } else if (hd == 128) {
        scores_rows<R(), 128>(q + r * ldq, ldq, row, n, hd, s + r * lds, lds, a);
      } else {
        scores_rows<R(), 0>(q + r * ldq, ldq, row, n, hd, s + r * lds, lds, a);
      }
    });
    return;
  }
#endif
  tile::scores_rows_h(rows, q, ldq, [&](int j) { return row[j]; }, n, hd, s, lds, ahead);
}

void pv_rows_h(int rows, const float* p, int ldp, int n, const uint16_t* const* row, int hd, float* acc, int lda) {
#if defined(AKVQ_HAVE_AVX512_KERNELS)
  if (active()) {
    tile::in_row_calls(rows, [&](auto R, int r) { pv_rows<R()>(p + r * ldp, ldp, n, row, hd, acc + r * lda, lda); });
    return;
  }
#endif
  tile::pv_rows_h(rows, p, ldp, n, [&](int j) { return row[j]; }, hd, acc, lda);
}

}  // namespace akvq::kv::tile512
