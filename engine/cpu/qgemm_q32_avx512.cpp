// AVX-512 VNNI tiles for Q4_0, Q4_1 and Q8_0 against Q16X activation rows (ops/qblocks.h), chosen
// at run time (cpu/isa.h). Work goes in groups of 4 weight blocks (128 values): one 512-bit
// register holds the low nibbles of the 4 blocks (values 0-15 of each), one the high nibbles
// (values 16-31), and the byte dot instruction vpdpbusd (u8 x s8 -> 4 products summed per int32
// lane) multiplies them with the activation bytes in the same order, so lanes 4k..4k+3 carry
// block k's partial sums and need no horizontal reduction per block.
//
// The 16-bit activations q = 256 h + l (h signed, l unsigned byte) are multiplied exactly in two
// passes: A = ((w . h) << 8) + (l . w). For the 4-bit types the nibble w (0..15) is the unsigned
// operand of the h pass and the signed one of the l pass; for Q8_0 (signed w) the h bytes are
// stored + 128 and 32768 * sum(w) is subtracted. Q4_0's -8 enters the integer dot as -8 * sum(q)
// (lane 4k of the group's offset lanes). Bounds per lane (8 products): Q4 |A| <= 8*15*32767 +
// 8*32*32767 < 2^24, so A converts to f32 exactly; Q8_0 |A| <= 8*128*32767 < 2^25 (rounded once).
// With 8-bit activation levels (Q8X groups, TensorView::act_bits == 8) h = q and the l pass and
// the shift are skipped: A = w . h. Per (row, token) and group: acc += f32(A) * (d_w * d_x) lane by lane (+ m_w * s_x
// in lane 4k for Q4_1); the 16 lanes are summed once at the end. Every (row, token) pair is computed by the same
// sequence whatever the tile, so decode equals prefill bit for bit.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/avx512_target.h"
#include "cpu/qgemm.h"
#include "cpu/qgemm_kquant_avx512.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace {

struct WQ4_0 {
  static constexpr DType kType = DType::Q4_0;
  static constexpr int64_t kBytes = sizeof(ops::BlockQ4_0);
  static constexpr int kQsOff = 2;
};
struct WQ4_1 {
  static constexpr DType kType = DType::Q4_1;
  static constexpr int64_t kBytes = sizeof(ops::BlockQ4_1);
  static constexpr int kQsOff = 4;
};
struct WQ8_0 {
  static constexpr DType kType = DType::Q8_0;
  static constexpr int64_t kBytes = sizeof(ops::BlockQ8_0);
  static constexpr int kQsOff = 2;
};

AKVQ_AVX512_BEGIN

// One group of 4 blocks of one weight row, ready for the dots.
struct WGroup {
  __m512i lo, hi;  // [64] bytes each: Q4 nibbles (values 0-15 | 16-31 of each block); Q8_0 halves
  __m512 dw;       // [16] d_w of block j / 4 in lane j
  __m512 mw;       // Q4_1: [16] m_w of block k in lane 4k, other lanes 0
  __m512i c;       // Q8_0: [16] -128 * sum of the lane's 8 weights (<< 8 with the l pass)
};

inline __m512i join4(__m128i a, __m128i b, __m128i c, __m128i d) {
  const __m512i v = _mm512_inserti32x4(_mm512_castsi128_si512(a), b, 1);
  return _mm512_inserti32x4(_mm512_inserti32x4(v, c, 2), d, 3);
}

inline __m512 expand4(__m128 v) {  // lanes 4k..4k+3 = v[k]
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                               _mm512_castps128_ps512(v));
}

inline __m128 half4(const uint16_t h[4]) {
  return _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(h[0]), static_cast<short>(h[1]), static_cast<short>(h[2]),
                                     static_cast<short>(h[3]), 0, 0, 0, 0));
}

// Blocks 4g .. 4g + n - 1 of a row (n = 4 when Full); missing blocks are zeros. L: the
// activations have an l pass (16-bit levels).
template <class K, bool Full, bool L>
inline void load_group(const uint8_t* row, int64_t g, int n, WGroup& w) {
  const uint8_t* blk = row + 4 * g * K::kBytes;
  __m128i qa[4], qb[4];
  uint16_t d[4] = {0, 0, 0, 0}, m[4] = {0, 0, 0, 0};
  for (int k = 0; k < 4; ++k) {
    if (Full || k < n) {
      const uint8_t* b = blk + k * K::kBytes;
      qa[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + K::kQsOff));
      if (K::kType == DType::Q8_0) qb[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + K::kQsOff + 16));
      std::memcpy(&d[k], b, 2);
      if (K::kType == DType::Q4_1) std::memcpy(&m[k], b + 2, 2);
    } else {
      qa[k] = qb[k] = _mm_setzero_si128();
    }
  }
  w.dw = expand4(half4(d));
  if constexpr (K::kType == DType::Q8_0) {
    w.lo = join4(qa[0], qa[1], qa[2], qa[3]);
    w.hi = join4(qb[0], qb[1], qb[2], qb[3]);
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w.lo), ones, w.hi);
    w.c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, L ? 15 : 7));
  } else {
    const __m512i v = join4(qa[0], qa[1], qa[2], qa[3]);
    const __m512i mask = _mm512_set1_epi8(15);
    w.lo = _mm512_and_si512(v, mask);
    w.hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
    if constexpr (K::kType == DType::Q4_1) {
      w.mw = _mm512_maskz_permutexvar_ps(0x1111, _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                         _mm512_castps128_ps512(half4(m)));
    }
  }
}

// A full group of 4 blocks in the G4 layout (cpu/qgemm.h): scales first, then the quants.
template <class K, bool L>
inline void load_group_g4(const uint8_t* row, int64_t g, WGroup& w) {
  const uint8_t* p = row + 4 * g * K::kBytes;
  w.dw = expand4(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  if constexpr (K::kType == DType::Q8_0) {
    w.lo = _mm512_loadu_si512(p + 8);
    w.hi = _mm512_loadu_si512(p + 72);
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w.lo), ones, w.hi);
    w.c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, L ? 15 : 7));
  } else {
    constexpr int kQ = K::kType == DType::Q4_1 ? 16 : 8;
    const __m512i v = _mm512_loadu_si512(p + kQ);
    const __m512i mask = _mm512_set1_epi8(15);
    w.lo = _mm512_and_si512(v, mask);
    w.hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
    if constexpr (K::kType == DType::Q4_1) {
      w.mw = _mm512_maskz_permutexvar_ps(
          0x1111, _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
          _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)))));
    }
  }
}

// acc + the group's contribution of one (row, token): a = the token's Q16X group (L) or Q8X
// group (!L: 8-bit levels, h = q, no l pass).
template <class K, bool L>
inline __m512 group_dot(const WGroup& w, const uint8_t* a, __m512 acc) {
  const __m512i h0 = _mm512_load_si512(a), h1 = _mm512_load_si512(a + 64);
  // The integer offset (Q4_0: -8 * sum(q) in lane 4k; Q8_0: -128 * sum(w), << 8 with the l pass)
  // seeds the accumulation with 8-bit levels and is added after the shift with 16-bit ones.
  __m512i off = _mm512_setzero_si512();
  if constexpr (K::kType == DType::Q4_0) off = _mm512_load_si512(a + 320);
  if constexpr (K::kType == DType::Q8_0) off = w.c;
  __m512i A = L ? _mm512_setzero_si512() : off;
  if constexpr (K::kType == DType::Q8_0) {  // h + 128 unsigned, w signed
    A = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(A, h0, w.lo), h1, w.hi);
  } else {  // nibble unsigned, h signed
    A = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(A, w.lo, h0), w.hi, h1);
  }
  if constexpr (L) {
    const __m512i l0 = _mm512_load_si512(a + 128), l1 = _mm512_load_si512(a + 192);
    A = _mm512_slli_epi32(A, 8);
    A = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(A, l0, w.lo), l1, w.hi);  // l unsigned, w signed
    if constexpr (K::kType != DType::Q4_1) A = _mm512_add_epi32(A, off);
  }
  const __m512 dx = _mm512_load_ps(reinterpret_cast<const float*>(a + 256));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(A), _mm512_mul_ps(w.dw, dx), acc);
  if constexpr (K::kType == DType::Q4_1) {
    acc = _mm512_fmadd_ps(w.mw, _mm512_load_ps(reinterpret_cast<const float*>(a + 320)), acc);
  }
  return acc;
}

// y[t * ldy + r] = row r . token t0 + t for r < R, t < T (rows w_stride bytes apart; G4: rows in
// the G4 layout, else the file's).
template <class K, bool G4, bool L, int R, int T>
void tile(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
  const int64_t nb = n_in / ops::kQK, ng = (nb + 3) / 4, n_full = nb / 4;
  const uint8_t* wr[R];
  const uint8_t* xa[T];
  for (int r = 0; r < R; ++r) wr[r] = w + r * w_stride;
  for (int t = 0; t < T; ++t) xa[t] = x.data + (t0 + t) * x.stride;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < ng; ++g) {
    WGroup wg[R];
    for (int r = 0; r < R; ++r) {
      // Every T prefetches: a batched decode step (T = 2..8) streams the weights from memory as
      // decode does, and a prefill's later token tiles find the lines in cache at little cost.
      prefetch_ahead<kAvx512PrefetchAhead>(wr[r] + 4 * g * K::kBytes, 4 * K::kBytes);
      if (G4 && g < n_full) {
        load_group_g4<K, L>(wr[r], g, wg[r]);
      } else if (g < n_full) {
        load_group<K, true, L>(wr[r], g, 4, wg[r]);
      } else {
        load_group<K, false, L>(wr[r], g, static_cast<int>(nb - 4 * g), wg[r]);
      }
    }
    for (int t = 0; t < T; ++t) {
      const uint8_t* a = xa[t] + g * ops::kQ16XGroupBytes;
      for (int r = 0; r < R; ++r) acc[r][t] = group_dot<K, L>(wg[r], a, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

template <class V, class K>
struct Tiles {
  // 4 x 8 measured best (tools_ops_bench, 64 tokens: 7B Q4_0 matmuls 1.04x the 4 x 3 tile with 16-bit
  // activations, 1.14x with 8-bit; each row group's load feeds 8 tokens)
  static constexpr TileShape kShape = {4, 8, 4, 4, 8};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    tile<K, V::kG4, V::kL, R, T>(w, w_stride, x, t0, n_in, y, ldy);
  }
};

AKVQ_AVX512_END

template <bool G4, bool L>
struct Avx512 {
  static constexpr bool kG4 = G4;  // weights in the G4 layout
  static constexpr bool kL = L;    // 16-bit activation levels (an l pass)
};

template <class K, bool G4, bool L>
const TileKernels* table() {
  static const TileKernels k = [] {
    TileKernels t = make_tile_table<Tiles<Avx512<G4, L>, K>>();
    t.act = L ? ActFormat::Q16X : ActFormat::Q8X;
    t.packing = G4 ? kPackG4 : kPackNone;
    return t;
  }();
  return &k;
}

template <bool G4, bool L>
const TileKernels* find(DType t) {
  switch (t) {
    case DType::Q4_0: return table<WQ4_0, G4, L>();
    case DType::Q4_1: return table<WQ4_1, G4, L>();
    case DType::Q8_0: return table<WQ8_0, G4, L>();
    default: return nullptr;
  }
}

}  // namespace

const TileKernels* simd_kernels_q32_avx512(DType t, int act_bits) {
  if (act_bits == 8) {
    if (const TileKernels* k = simd_kernels_kquant_avx512_act8(t)) return k;  // Q4_K: Q8K rows
  }
  if (const TileKernels* k = simd_kernels_kquant_avx512(t)) return k;  // K-quants read ActQ16K rows
  return act_bits == 8 ? find<false, false>(t) : find<false, true>(t);
}

const TileKernels* simd_kernels_q32_avx512_g4(DType t, int act_bits) {
  return act_bits == 8 ? find<true, false>(t) : find<true, true>(t);
}

#else

const TileKernels* simd_kernels_q32_avx512(DType, int) {
  return nullptr;
}

const TileKernels* simd_kernels_q32_avx512_g4(DType, int) {
  return nullptr;
}

#endif

}  // namespace akvq::cpu
