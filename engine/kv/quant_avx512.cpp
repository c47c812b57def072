// AVX-512 attention kernels over packed 2-bit and 4-bit KV rows (layout in quant.h), chosen at run
// time by RowCodec (cpu/isa.h) for specs with groups of a multiple of 16 values; every other spec
// keeps the AVX2 kernels (quant_avx2.cpp).
//
// One code dword holds 16 2-bit or 8 4-bit codes. A code becomes its level with one permute and no
// mask: 2-bit, an in-lane vpermilps (it reads bits [1:0] of each lane) of the 4 levels repeated per
// 128 bits; 4-bit, a vpermps (bits [3:0]) of the 16 levels. Uniform and Gaussian tables cost the
// same, no int->float convert and no table walk per code.
//   scores:     a lane per row (16 rows per pass). The code dwords and group headers of 16 rows
//               are gathered once; code i of all 16 rows is then one shift by an immediate and one
//               permute, shared by the NQ queries (q_j[i] broadcast from memory into the FMA).
//               No horizontal sums: lane t ends with row t's score.
//   accumulate: a lane per channel. Per row and 16 channels: a broadcast of their codes (a dword,
//               2-bit; a qword, 4-bit), a variable shift and a permute, shared by the NQ weight
//               vectors. 4-bit: lane 2k holds channel k and lane 2k + 1 channel 8 + k (the qword's
//               two dwords alternate across the lanes), permuted back when the sums are stored.
//               With QuantSpec::pv_bf16: two rows per vdpbf16ps (acc_tile_bf16); per row pair
//               and 16 channels a permute, a shift and a table permute shared by the NQ weight
//               vectors, and one instruction per query (where fp32 FMAs need a broadcast, a
//               shift, a permute and one FMA per query per row).
// Order of the arithmetic (a row's result depends only on its own data, never on the other rows
// or queries of the call, so decode and prefill give the same bits):
//   score  = Σ_g (Σ_{even i} q_i·L_i + Σ_{odd i} q_i·L_i)·scale_g  (each Σ in code order, fp32)
//            + Σ_g offset_g·qsum_g
//   acc[c] = (acc[c] + Σ_t (p_t·scale_{t,g})·L_{t,c} in row order) + Σ_t p_t·offset_{t,g}
//            (the last Σ: per block of 64 rows from the call's first, 16 lane sums of the rows
//            t ≡ lane mod 16 reduced by _mm512_reduce_add_ps, the blocks added in order; with
//            pv_bf16 the first Σ takes rows t, t + 1 (t even from the call's first row) as one
//            vdpbf16ps of bf16(p_t·scale)·bf16(L), the row t + 1 term added first, each fp32-rounded)
// which differs from the AVX2 kernels only by float rounding (the parity tests bound both).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/avx512_target.h"
#include "kv/quant.h"
#include "kv/quant_headers_avx512.h"

namespace akvq::kv::simd512 {

#if defined(AKVQ_HAVE_AVX512_KERNELS)

namespace {

constexpr int kMaxGroups = 64;  // longest row in groups (more: not served)
constexpr int kRowBlock = 64;   // rows per block of accumulate (weights p·scale precomputed)

AKVQ_AVX512_BEGIN

// Levels of the 16 codes in the low BITS bits of the lanes of c (higher bits are ignored).
template <int BITS>
inline __m512 levels16(__m512 table, __m512i c) {
  if constexpr (BITS == 2) return _mm512_permutevar_ps(table, c);
  return _mm512_permutexvar_ps(c, table);
}

// The level table as levels16 reads it: 2-bit, the 4 levels in each 128-bit lane; 4-bit, the 16.
template <int BITS>
inline __m512 level_table16(const float* levels) {
  if constexpr (BITS == 2) return _mm512_broadcast_f32x4(_mm_loadu_ps(levels));
  return _mm512_loadu_ps(levels);
}

// ---------------------------------------------------------------- scores (a lane per row)

// out_j[t] for up to 16 rows t0..t0+m (mask k), NQ queries q_j = q + j·qst.
template <int BITS, int NQ>
inline void scores16(int group, int ng, const __m512 table, const float* q, size_t qst, const float* qsum, size_t qsst,
                     const uint8_t* base, const Headers16& plan, __m512i idx, __mmask16 k, float* out, size_t ost) {
  constexpr int kCpd = 32 / BITS;  // codes per dword
  const int wpg = group / kCpd;    // code dwords per group
  const uint8_t* codes = base + 4 * static_cast<size_t>(ng);
  __m512 r[NQ], off[NQ];
#pragma GCC unroll 4
  for (int j = 0; j < NQ; ++j) r[j] = _mm512_setzero_ps(), off[j] = _mm512_setzero_ps();
  for (int g = 0; g < ng; ++g) {
    __m512 sc, of;
    headers16_rows(plan, base + 4 * g, idx, k, sc, of);
    __m512 a0[NQ], a1[NQ];
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) a0[j] = _mm512_setzero_ps(), a1[j] = _mm512_setzero_ps();
    for (int w = 0; w < wpg; ++w) {
      const int d = g * wpg + w;  // code dword of the row
      const __m512i c = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, idx, codes + 4 * d, 1);
      const float* qd = q + kCpd * d;
#pragma GCC unroll 8
      for (int i = 0; i < kCpd; i += 2) {
        const __m512 f0 = levels16<BITS>(table, _mm512_srli_epi32(c, BITS * i));
        const __m512 f1 = levels16<BITS>(table, _mm512_srli_epi32(c, BITS * i + BITS));
#pragma GCC unroll 4
        for (int j = 0; j < NQ; ++j) {
          a0[j] = _mm512_fmadd_ps(f0, _mm512_set1_ps(qd[j * qst + i]), a0[j]);
          a1[j] = _mm512_fmadd_ps(f1, _mm512_set1_ps(qd[j * qst + i + 1]), a1[j]);
        }
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) {
      r[j] = _mm512_fmadd_ps(_mm512_add_ps(a0[j], a1[j]), sc, r[j]);
      off[j] = _mm512_fmadd_ps(of, _mm512_set1_ps(qsum[j * qsst + g]), off[j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NQ; ++j) _mm512_mask_storeu_ps(out + j * ost, k, _mm512_add_ps(r[j], off[j]));
}

template <int BITS, int NQ>
void scores_k(int group, const float* levels, const float* q, size_t qst, const float* qsum, size_t qsst, int n,
              const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t ost) {
  const int ng = n / group;
  const Headers16 plan = headers16_plan(stride);
  const __m512 table = level_table16<BITS>(levels);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(stride)));  // byte offset of row t0 + lane
  for (int64_t t0 = 0; t0 < n_rows; t0 += 16) {
    const int m = static_cast<int>(std::min<int64_t>(16, n_rows - t0));
    const __mmask16 k = static_cast<__mmask16>((1u << m) - 1);
    scores16<BITS, NQ>(group, ng, table, q, qst, qsum, qsst, rows + t0 * stride, plan, idx, k, out + t0, ost);
  }
}

// ---------------------------------------------------------------- accumulate (a lane per channel)

// acc_j[16·NCH channels from code_off] += Σ_t w_j[t] · L[codes], rows [0, nb) of the block at rows
// (w_j = w + j·kRowBlock: p_j[t]·scale_{t,g} of the tile's group).
template <int BITS, int NQ, int NCH>
inline void acc_tile(const float* w, const uint8_t* rows, size_t stride, int nb, size_t code_off, const __m512 table,
                     float* acc, size_t ast) {
  // 4-bit: lane 2k holds channel k, lane 2k + 1 channel 8 + k (file comment)
  const __m512i to_lanes = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  const __m512i to_channels = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m512i sh = BITS == 2 ? _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
                               : _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
  __m512 a[NQ * NCH];
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) {
      const __m512 v = _mm512_loadu_ps(acc + j * ast + 16 * c);
      a[j * NCH + c] = BITS == 2 ? v : _mm512_permutexvar_ps(to_lanes, v);
    }
  }
  for (int t = 0; t < nb; ++t) {
    const uint8_t* codes = rows + t * stride + code_off;
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) {
      __m512i cw;
      if constexpr (BITS == 2) {
        uint32_t d;
        std::memcpy(&d, codes + 4 * c, 4);
        cw = _mm512_set1_epi32(static_cast<int>(d));
      } else {
        uint64_t d;
        std::memcpy(&d, codes + 8 * c, 8);
        cw = _mm512_set1_epi64(static_cast<long long>(d));
      }
      const __m512 f = levels16<BITS>(table, _mm512_srlv_epi32(cw, sh));
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j)
        a[j * NCH + c] = _mm512_fmadd_ps(f, _mm512_set1_ps(w[j * kRowBlock + t]), a[j * NCH + c]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) {
      const __m512 v = a[j * NCH + c];
      _mm512_storeu_ps(acc + j * ast + 16 * c, BITS == 2 ? v : _mm512_permutexvar_ps(to_channels, v));
    }
  }
}

// The code bytes of 16·NCH channels at x: NCH dwords (2-bit) or qwords (4-bit), the rest 0. (A
// function, not a lambda: clang's target region applies to functions only.)
template <int BITS, int NCH>
inline __m512i load_codes(const uint8_t* x) {
  if constexpr (BITS == 2) return _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << NCH) - 1), x);
  return _mm512_maskz_loadu_epi64(static_cast<__mmask8>((1u << NCH) - 1), x);
}

// Two rows per instruction (vdpbf16ps): acc_j[16·NCH channels from code_off] += Σ_t w_j[t] ·
// L[codes], rows [0, nb) of the block, with the weights wb_j[t] = bf16(p_j[t]·scale_{t,g}) (wb_j =
// wb + j·kRowBlock, 0 past nb) and the levels in bf16. Rows t and t + 1 (t even) make one bf16 pair
// per lane: the 16-bit words of their codes of 16 channels interleaved (row t, row t + 1, ...),
// broadcast, shifted within each word (vpsrlvw) and looked up by vpermw in a 32-entry table
// (entry i = level i mod 2^BITS, so the code bits above the code are ignored).
//   2-bit: a code dword per row and 16 channels; the pair qword in every qword m, shifted by 2m:
//          lane 2m holds channel m, lane 2m + 1 channel 8 + m.
//   4-bit: a code qword per row and 16 channels; the pair 128 bits in every 128-bit lane L,
//          shifted by 4L: lane 4L + k holds channel 4k + L.
// The accumulators keep that lane order; to_lanes / to_channels permute at load and store.
template <int BITS, int NQ, int NCH>
inline void acc_tile_bf16(const uint16_t* wb, const uint8_t* rows, size_t stride, int nb, size_t code_off,
                          const __m512i table, float* acc, size_t ast) {
  static_assert(NCH == 1 || NCH == 2 || NCH == 4 || NCH == 8);
  static_assert(BITS == 2 || BITS == 4);
  const __m512i to_lanes = BITS == 2 ? _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15)
                                     : _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i to_channels = BITS == 2 ? _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)
                                        : _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  // 2-bit: the words of qword m shift by 2m; 4-bit: the words of 128-bit lane L by 4L
  const __m512i sh = BITS == 2 ? _mm512_set_epi64(0x000e000e000e000eLL, 0x000c000c000c000cLL, 0x000a000a000a000aLL,
                                                  0x0008000800080008LL, 0x0006000600060006LL, 0x0004000400040004LL,
                                                  0x0002000200020002LL, 0)
                               : _mm512_set_epi64(0x000c000c000c000cLL, 0x000c000c000c000cLL, 0x0008000800080008LL,
                                                  0x0008000800080008LL, 0x0004000400040004LL, 0x0004000400040004LL,
                                                  0, 0);
  __m512 a[NQ * NCH];
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) a[j * NCH + c] = _mm512_permutexvar_ps(to_lanes, _mm512_loadu_ps(acc + j * ast + 16 * c));
  }
  for (int t = 0; t < nb; t += 2) {
    const uint8_t* codes = rows + t * stride + code_off;
    const __m512i r0 = load_codes<BITS, NCH>(codes);
    const __m512i r1 = t + 1 < nb ? load_codes<BITS, NCH>(codes + stride) : _mm512_setzero_si512();
    // 128-bit lane L of lo / hi: 2-bit, the pair qwords of chunks 4L, 4L + 1 / 4L + 2, 4L + 3;
    // 4-bit, the pair 128 bits of chunk 2L / 2L + 1
    const __m512i lo = _mm512_unpacklo_epi16(r0, r1), hi = _mm512_unpackhi_epi16(r0, r1);
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) {
      __m512i pair;
      if constexpr (BITS == 2) {
        pair = _mm512_permutexvar_epi64(_mm512_set1_epi64(2 * (c / 4) + (c & 1)), (c & 2) ? hi : lo);
      } else {
        const __m512i src = (c & 1) ? hi : lo;
        // 128-bit lane c / 2 of src broadcast; an immediate in each case, so that builds that do
        // not unroll the loop (Debug, -O1) compile too
        switch (c / 2) {
          case 0: pair = _mm512_shuffle_i32x4(src, src, 0x00); break;
          case 1: pair = _mm512_shuffle_i32x4(src, src, 0x55); break;
          case 2: pair = _mm512_shuffle_i32x4(src, src, 0xAA); break;
          default: pair = _mm512_shuffle_i32x4(src, src, 0xFF); break;
        }
      }
      const __m512bh f = (__m512bh)_mm512_permutexvar_epi16(_mm512_srlv_epi16(pair, sh), table);
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) {
        uint32_t wp;
        std::memcpy(&wp, wb + j * kRowBlock + t, 4);
        a[j * NCH + c] = _mm512_dpbf16_ps(a[j * NCH + c], f, (__m512bh)_mm512_set1_epi32(static_cast<int>(wp)));
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) _mm512_storeu_ps(acc + j * ast + 16 * c, _mm512_permutexvar_ps(to_channels, a[j * NCH + c]));
  }
}

// The levels as acc_tile_bf16 reads them: 32 bf16 words, word i = bf16(levels[i mod 2^BITS]).
template <int BITS>
inline __m512i level_table_bf16(const float* levels) {
  const __m512 l = BITS == 2 ? _mm512_broadcast_f32x4(_mm_loadu_ps(levels)) : _mm512_loadu_ps(levels);
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(l);
  return _mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1);
}

template <int BITS, int NQ, int NCH, bool BF>
void accumulate_k(int group, const float* levels, const float* p, size_t pst, const uint8_t* rows, size_t stride,
                  int64_t n_rows, int n, float* acc, size_t ast, const RowsAhead* ahead) {
  const int ng = n / group, wpg = group / 16;  // 16-channel chunks per group
  const Headers16 plan = headers16_plan(stride);
  const __m512 table = level_table16<BITS>(levels);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(stride)));  // byte offset of row t + lane
  float osum[NQ][kMaxGroups] = {};
  alignas(64) float w[NQ * kRowBlock];  // [NQ][kRowBlock] p_j[t]·scale_{t,g} (fp32 products)
  alignas(64) uint16_t wb[NQ * kRowBlock];  // the same in bf16 (BF: the pairs)
  const __m512i table_bf = BF ? level_table_bf16<BITS>(levels) : _mm512_setzero_si512();
  for (int64_t t0 = 0; t0 < n_rows; t0 += kRowBlock) {
    const int nb = static_cast<int>(std::min<int64_t>(kRowBlock, n_rows - t0));
    const uint8_t* blk = rows + t0 * stride;
    for (int g = 0; g < ng; ++g) {
      // 16 rows' headers per gather (the scalar loop was a third of this kernel's time)
      __m512 os[NQ];
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) os[j] = _mm512_setzero_ps();
      for (int t = 0; t < nb; t += 16) {
        if (g == 0) request_ahead(ahead, t0 + t, std::min<int64_t>(n_rows, t0 + t + 16), n_rows);
        const __mmask16 k = static_cast<__mmask16>(nb - t >= 16 ? 0xffff : (1u << (nb - t)) - 1);
        __m512 sc, of;
        headers16_rows(plan, blk + t * stride + 4 * g, idx, k, sc, of);
#pragma GCC unroll 4
        for (int j = 0; j < NQ; ++j) {
          const __m512 pj = _mm512_maskz_loadu_ps(k, p + j * pst + t0 + t);  // 0 past the block
          const __m512 wj = _mm512_mul_ps(pj, sc);
          if constexpr (BF) {  // stored once, in the form the tile reads
            _mm256_store_si256(reinterpret_cast<__m256i*>(wb + j * kRowBlock + t), (__m256i)_mm512_cvtneps_pbh(wj));
          } else {
            _mm512_store_ps(w + j * kRowBlock + t, wj);
          }
          os[j] = _mm512_fmadd_ps(pj, of, os[j]);
        }
      }
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) osum[j][g] += _mm512_reduce_add_ps(os[j]);
      for (int d = g * wpg; d < (g + 1) * wpg; d += NCH) {
        const size_t code_off = 4 * static_cast<size_t>(ng) + 2 * BITS * static_cast<size_t>(d);
        if constexpr (BF) {
          acc_tile_bf16<BITS, NQ, NCH>(wb, blk, stride, nb, code_off, table_bf, acc + 16 * d, ast);
        } else {
          acc_tile<BITS, NQ, NCH>(w, blk, stride, nb, code_off, table, acc + 16 * d, ast);
        }
      }
    }
  }
  for (int j = 0; j < NQ; ++j) {
    float* aj = acc + j * ast;
    for (int g = 0; g < ng; ++g) {
      const __m512 o = _mm512_set1_ps(osum[j][g]);
      for (int i = g * group; i < (g + 1) * group; i += 16) {
        _mm512_storeu_ps(aj + i, _mm512_add_ps(_mm512_loadu_ps(aj + i), o));
      }
    }
  }
}

// Channel tile (zmm per query): the largest of 8, 4, 2, 1 that divides the group's dwords and
// keeps NQ·NCH <= 16 accumulators.
template <int BITS, int NQ, bool BF>
void accumulate_nch(int group, const float* levels, const float* p, size_t pst, const uint8_t* rows, size_t stride,
                    int64_t n_rows, int n, float* acc, size_t ast, const RowsAhead* ahead) {
  const int wpg = group / 16;
  if constexpr (NQ <= 2) {
    if (wpg % 8 == 0) return accumulate_k<BITS, NQ, 8, BF>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
  }
  if (wpg % 4 == 0) return accumulate_k<BITS, NQ, 4, BF>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
  if (wpg % 2 == 0) return accumulate_k<BITS, NQ, 2, BF>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
  return accumulate_k<BITS, NQ, 1, BF>(group, levels, p, pst, rows, stride, n_rows, n, acc, ast, ahead);
}

template <int BITS>
void scores_bits(int group, const float* levels, const float* q, size_t q_stride, const float* qsum,
                 size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out,
                 size_t out_stride) {
  switch (nq) {
    case 1: return scores_k<BITS, 1>(group, levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride);
    case 2: return scores_k<BITS, 2>(group, levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride);
    case 3: return scores_k<BITS, 3>(group, levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride);
    default:
      return scores_k<BITS, 4>(group, levels, q, q_stride, qsum, qsum_stride, n, rows, stride, n_rows, out, out_stride);
  }
}

template <int BITS, bool BF = false>
void accumulate_bits(int group, const float* levels, const float* p, size_t p_stride, int nq, const uint8_t* rows,
                     size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                     const RowsAhead* ahead) {
  switch (nq) {
    case 1: return accumulate_nch<BITS, 1, BF>(group, levels, p, p_stride, rows, stride, n_rows, n, acc, acc_stride, ahead);
    case 2: return accumulate_nch<BITS, 2, BF>(group, levels, p, p_stride, rows, stride, n_rows, n, acc, acc_stride, ahead);
    case 3: return accumulate_nch<BITS, 3, BF>(group, levels, p, p_stride, rows, stride, n_rows, n, acc, acc_stride, ahead);
    default: return accumulate_nch<BITS, 4, BF>(group, levels, p, p_stride, rows, stride, n_rows, n, acc, acc_stride, ahead);
  }
}

AKVQ_AVX512_END

}  // namespace

bool available(const QuantSpec& spec, int group, int n) {
  return (spec.bits == 2 || spec.bits == 4) && group > 0 && group % 16 == 0 && n % group == 0 &&
         n / group <= kMaxGroups;
}

void scores_multi(const QuantSpec& spec, int group, const float* levels, const float* q, size_t q_stride,
                  const float* qsum, size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride,
                  int64_t n_rows, float* out, size_t out_stride) {
  (spec.bits == 2 ? scores_bits<2> : scores_bits<4>)(group, levels, q, q_stride, qsum, qsum_stride, nq, n, rows,
                                                     stride, n_rows, out, out_stride);
}

void accumulate_multi(const QuantSpec& spec, int group, const float* levels, const float* p, size_t p_stride, int nq,
                      const uint8_t* rows, size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                      const RowsAhead* ahead) {
  const auto kernel = spec.bits == 4 ? (spec.pv_bf16 ? accumulate_bits<4, true> : accumulate_bits<4>)
                                     : (spec.pv_bf16 ? accumulate_bits<2, true> : accumulate_bits<2>);
  kernel(group, levels, p, p_stride, nq, rows, stride, n_rows, n, acc, acc_stride, ahead);
}

#else  // no AVX-512 kernels in this build: RowCodec never picks these

bool available(const QuantSpec&, int, int) {
  return false;
}
void scores_multi(const QuantSpec& spec, int group, const float* levels, const float* q, size_t q_stride,
                  const float* qsum, size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride,
                  int64_t n_rows, float* out, size_t out_stride) {
  simd::scores_multi(spec, group, levels, q, q_stride, qsum, qsum_stride, nq, n, rows, stride, n_rows, out, out_stride);
}
void accumulate_multi(const QuantSpec& spec, int group, const float* levels, const float* p, size_t p_stride, int nq,
                      const uint8_t* rows, size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                      const RowsAhead* ahead) {
  simd::accumulate_multi(spec, group, levels, p, p_stride, nq, rows, stride, n_rows, n, acc, acc_stride, ahead);
}

#endif

}  // namespace akvq::kv::simd512
