// AVX2 tiles for the K-quants (Q4_K, Q6_K) against ActQ16K activations (int16, 256-value
// super-blocks). A row's super-block becomes 16 vectors of 16 int16 weights with the sub-block
// scales folded in (Q4_K: q * sc <= 15 * 63; Q6_K: (q - 32) * sc, |.| <= 32 * 128), and each
// vector meets the token's 16 int16 values in madd (two products summed per int32 lane).
//   Prefill (T > 1): each row's super-block is unpacked once into an L1 scratch and multiplied
//   with the tokens in register blocks of R rows x G tokens (one weight load feeds G tokens, one
//   activation load R rows).
//   Decode (T == 1): no scratch (dot_t1): Q6_K's vectors go from the unpack straight into madd,
//   Q4_K's scales multiply each sub-block's madd sums instead of its weights (the same integers
//   in the same lanes).
// Per (row, token, super-block) both do the same arithmetic, so decode equals prefill bit for bit:
// the exact integer sum S of each accumulation (Q4_K: the super-block; Q6_K: each half) adds
// f32(S) * (d_w * d_x) to an 8-lane f32 accumulator by one FMA, then Q4_K adds its min term by one
// more FMA, m_w * m_x with m_w = -dmin * mn_j and m_x = d_x * sums_j (lane j); the 8 lanes are
// summed at the end.
// Integer bounds (|x| <= 32767): Q4_K: 16 madds per super-block -> 32 products per lane,
// <= 32 * 945 * 32767 < 2^30. Q6_K: 8 madds per half -> 16 products per lane,
// <= 16 * 4096 * 32767 = 2147418112 < 2^31 - 1.
#include <cstring>

#include "cpu/qgemm.h"
#include "cpu/simd.h"
#include "cpu/tile_driver.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

#ifdef AKVQ_AVX2
namespace {

using ops::ActQ16K;
using ops::BlockQ4_K;
using ops::BlockQ6_K;

// A row's super-block besides its weight vectors: d_w and the min lanes.
struct RowScales {
  __m256 dw;  // [8] d_w
  __m256 mw;  // [8] Q4_K: -dmin * mn_j; Q6_K: 0
};

// d_w and the min lanes of a Q4_K super-block (mn8: its 8 mins as bytes, ops::q4k_scales_mins).
inline RowScales q4k_row_scales(const BlockQ4_K* b, uint64_t mn8) {
  const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(mn8))));
  return {_mm256_set1_ps(_cvtsh_ss(b->d)), _mm256_mul_ps(mn, _mm256_set1_ps(-_cvtsh_ss(b->dmin)))};
}

// Q4_K values 64k .. 64k + 63 (k < 4) as int16: v[i] = values 64k + 16i .. + 15, from bytes 32k ..
// 32k + 31 (low nibbles = values 64k + l, sub-block 2k; high nibbles = values 64k + 32 + l,
// sub-block 2k + 1).
inline void q4k_values(const BlockQ4_K* b, int k, __m256i v[4]) {
  const __m256i m4 = _mm256_set1_epi16(15);
  const uint8_t* q = b->qs + 32 * k;
  const __m256i v0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
  const __m256i v1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)));
  v[0] = _mm256_and_si256(v0, m4);
  v[1] = _mm256_and_si256(v1, m4);
  v[2] = _mm256_srli_epi16(v0, 4);
  v[3] = _mm256_srli_epi16(v1, 4);
}

// Q4_K: calls emit(i, v) for i = 0..15 with v = weights 16i .. 16i + 15 times their scale.
template <class Emit>
AKVQ_ALWAYS_INLINE void unpack(const BlockQ4_K* b, RowScales& rs, Emit&& emit) {
  uint64_t sc8, mn8;
  ops::q4k_scales_mins(b->scales, sc8, mn8);
  alignas(16) int16_t sc[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(sc), _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc8))));
  for (int k = 0; k < 4; ++k) {
    __m256i v[4];
    q4k_values(b, k, v);
    const __m256i s0 = _mm256_set1_epi16(sc[2 * k]), s1 = _mm256_set1_epi16(sc[2 * k + 1]);
    emit(4 * k + 0, _mm256_mullo_epi16(v[0], s0));
    emit(4 * k + 1, _mm256_mullo_epi16(v[1], s0));
    emit(4 * k + 2, _mm256_mullo_epi16(v[2], s1));
    emit(4 * k + 3, _mm256_mullo_epi16(v[3], s1));
  }
  rs = q4k_row_scales(b, mn8);
}

// Q6_K, half h (values 128h .. 128h + 127): ql bytes A = ql[64h ..], B = ql[64h + 32 ..], qh bytes
// Q = qh[32h ..]; value 128h + 32k + l = nibble (k < 2: low, else high) of (k odd ? B : A)[l] | 2
// bits of Q[l] at shift 2k, minus 32, times the int8 scale of its group of 16.
template <class Emit>
AKVQ_ALWAYS_INLINE void unpack(const BlockQ6_K* b, RowScales& rs, Emit&& emit) {
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), c32 = _mm256_set1_epi8(32);
  // the 16 int8 scales as int16, groups 0-7 in both 128-bit lanes of sc_lo, 8-15 of sc_hi: group g's
  // scale in every int16 lane is then one in-lane byte shuffle
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));
  const __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
  const __m256i sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
  const auto scale = [&](int g) {
    const int p = 2 * (g % 8);
    return _mm256_shuffle_epi8(g < 8 ? sc_lo : sc_hi, _mm256_set1_epi16(static_cast<int16_t>(p | (p + 1) << 8)));
  };
  for (int h = 0; h < 2; ++h) {
    const __m256i A = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + 64 * h));
    const __m256i B = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + 64 * h + 32));
    const __m256i Q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + 32 * h));
    __m256i q[4];  // bytes of values 128h + 32k + l
    q[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(Q, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m3), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(Q, 6), m3), 4));
    // q - 32 in [-32, 31] as bytes (one byte subtraction per 32 values), stored and widened by
    // loads: one widening load per 16 values instead of a lane extract and a widening shuffle
    // (1.1B shapes, 1 thread, 3 alternating rounds: decode 24.6-27.0 -> 27.2-29.9 GFLOP/s)
    alignas(32) int8_t qb[4][32];
    for (int k = 0; k < 4; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(qb[k]), _mm256_sub_epi8(q[k], c32));
    for (int k = 0; k < 4; ++k) {
      const int g = 8 * h + 2 * k;  // groups g (values 0-15) and g + 1
      const __m256i lo = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(qb[k])));
      const __m256i hi = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(qb[k] + 16)));
      emit(g, _mm256_mullo_epi16(lo, scale(g)));
      emit(g + 1, _mm256_mullo_epi16(hi, scale(g + 1)));
    }
  }
  rs.dw = _mm256_set1_ps(_cvtsh_ss(b->d));
  rs.mw = _mm256_setzero_ps();
}

struct KQ4_K {
  using Block = BlockQ4_K;
  static constexpr DType kType = DType::Q4_K;
  static constexpr int kHalves = 1;  // one int32 accumulation per super-block
  static constexpr bool kMin = true;
};

struct KQ6_K {
  using Block = BlockQ6_K;
  static constexpr DType kType = DType::Q6_K;
  static constexpr int kHalves = 2;  // one int32 accumulation per half super-block
  static constexpr bool kMin = false;
};

// The token side of one super-block: its int16 values, d_x and the min lanes m_x.
struct TokenBlock {
  const int16_t* qs;
  __m256 dx;  // [8] d_x
  __m256 mx;  // [8] d_x * sums_j (Q4_K only)
};

template <class K>
inline TokenBlock token_block(const ActQ16K* x) {
  TokenBlock tb;
  tb.qs = x->qs;
  tb.dx = _mm256_set1_ps(x->d);
  if constexpr (K::kMin) {
    tb.mx = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->sums))), tb.dx);
  } else {
    tb.mx = _mm256_setzero_ps();
  }
  return tb;
}

// acc += f32(S) * (d_w * d_x): the step that closes one integer accumulation.
inline __m256 scale_add(__m256i s, const RowScales& rs, const TokenBlock& tb, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(rs.dw, tb.dx), acc);
}

inline __m256i madd_add(__m256i s, __m256i w, const int16_t* x) {
  return _mm256_add_epi32(s, _mm256_madd_epi16(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))));
}

// Decode of one super-block of one row against a token's int16 values x[256]: the exact integer
// sums s[kHalves] of unpack's scaled vectors (lane for lane) and the row's scales.
// Q4_K applies each sub-block's scale to the sum of its two madds (sc_j * (madd + madd)) rather
// than to its 4 weight vectors: 16 madds and 8 mulld where unpack takes 16 mullw and 16 madds,
// the 8 scales taken from one register by a byte shuffle each. The same integers, so the same
// bits: |sc_j * (madd + madd)| <= 63 * 4 * 15 * 32767 < 2^27 per lane and sub-block, s[0] as
// bounded above.
inline void dot_t1(const BlockQ4_K* b, const int16_t* x, __m256i* s, RowScales& rs) {
  uint64_t sc8, mn8;
  ops::q4k_scales_mins(b->scales, sc8, mn8);
  const __m256i scb = _mm256_set1_epi64x(static_cast<long long>(sc8));  // the 8 scale bytes, twice per lane
  const auto madd = [](__m256i w, const int16_t* xv) {
    return _mm256_madd_epi16(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xv)));
  };
  const auto scaled = [&](__m256i t, int j) {  // t times sub-block scale j (byte j of scb in each int32 lane)
    return _mm256_mullo_epi32(t, _mm256_shuffle_epi8(scb, _mm256_set1_epi32(static_cast<int>(0x80808000u | j))));
  };
  __m256i S = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const int16_t* xk = x + 64 * k;
    __m256i v[4];
    q4k_values(b, k, v);
    S = _mm256_add_epi32(S, scaled(_mm256_add_epi32(madd(v[0], xk), madd(v[1], xk + 16)), 2 * k));
    S = _mm256_add_epi32(S, scaled(_mm256_add_epi32(madd(v[2], xk + 32), madd(v[3], xk + 48)), 2 * k + 1));
    asm("" : "+x"(S));  // keeps the sub-blocks in order (GCC otherwise hoists all 16 madds and spills)
  }
  s[0] = S;
  rs = q4k_row_scales(b, mn8);
}

// Q6_K: unpack's scaled vectors straight into madd, one integer sum per half.
inline void dot_t1(const BlockQ6_K* b, const int16_t* x, __m256i* s, RowScales& rs) {
  __m256i a[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};  // locals: kept in registers
  unpack(b, rs, [&](int i, __m256i v) {
    a[i / 8] = madd_add(a[i / 8], v, x + 16 * i);
    asm("" : "+x"(a[i / 8]));  // in order: GCC otherwise hoists the madds and spills them
  });
  s[0] = a[0];
  s[1] = a[1];
}

// Decode: R rows x one token, no scratch (dot_t1).
template <class K, int R>
void tile_t1(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y) {
  using Block = typename K::Block;
  const int64_t nb = n_in / ops::kQKK;
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const ActQ16K* xr = reinterpret_cast<const ActQ16K*>(x.data + t0 * x.stride);
  for (int64_t b = 0; b < nb; ++b) {
    const TokenBlock tb = token_block<K>(xr + b);
    for (int r = 0; r < R; ++r) {
      const Block* blk = reinterpret_cast<const Block*>(w + r * w_stride) + b;
      prefetch_ahead(blk, sizeof(Block));
      __m256i s[K::kHalves];
      RowScales rs;
      dot_t1(blk, tb.qs, s, rs);
      for (int h = 0; h < K::kHalves; ++h) acc[r] = scale_add(s[h], rs, tb, acc[r]);
      if constexpr (K::kMin) acc[r] = _mm256_fmadd_ps(rs.mw, tb.mx, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

// One unpacked super-block of one row (prefill).
struct Unpacked {
  alignas(32) int16_t wq[256];  // [256] weights times their sub-block scale
  RowScales rs;
};

// Tokens per register block for R rows: R * G int32 accumulators + R weights (8-bit: + R scale
// words) + 1 activation within the 16 ymm registers (exceeded only by the rare 3- and 4-row tiles
// of the 8-bit family).
constexpr int group_tokens(int R) {
  return R == 1 ? 6 : R == 2 ? 4 : R == 3 ? 3 : 2;
}

// acc[r][g] += rows r < R . tokens g < G over one super-block (u: the unpacked rows).
template <class K, int R, int G>
AKVQ_ALWAYS_INLINE void block_dots(const Unpacked* u, const TokenBlock* tb, __m256 (*acc)[kMaxTileT], int t0) {
  constexpr int kPer = 16 / K::kHalves;
  for (int h = 0; h < K::kHalves; ++h) {
    __m256i s[R][G];
    for (int r = 0; r < R; ++r) {
      for (int g = 0; g < G; ++g) s[r][g] = _mm256_setzero_si256();
    }
    for (int i = h * kPer; i < (h + 1) * kPer; ++i) {
      __m256i wv[R];
      for (int r = 0; r < R; ++r) wv[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(u[r].wq + 16 * i));
      for (int g = 0; g < G; ++g) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tb[g].qs + 16 * i));
        for (int r = 0; r < R; ++r) s[r][g] = _mm256_add_epi32(s[r][g], _mm256_madd_epi16(wv[r], xv));
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int g = 0; g < G; ++g) acc[r][t0 + g] = scale_add(s[r][g], u[r].rs, tb[g], acc[r][t0 + g]);
    }
  }
  if constexpr (K::kMin) {
    for (int r = 0; r < R; ++r) {
      for (int g = 0; g < G; ++g) acc[r][t0 + g] = _mm256_fmadd_ps(u[r].rs.mw, tb[g].mx, acc[r][t0 + g]);
    }
  }
}

// ---- the multi-token tile loop of both families ----
// F (a family): Block, Row (one row's super-block, ready), Token (one token's super-block),
// load(block, row), token(activation row, b), dots<R, G>(rows, tokens, acc, t0): acc[r][t0 + g]
// += rows r < R . tokens g < G over one super-block.

// Tokens T0 .. T - 1 in register blocks of group_tokens(R).
template <class F, int R, int T, int T0>
inline void token_groups(const typename F::Row* rows, const typename F::Token* tk, __m256 (*acc)[kMaxTileT]) {
  if constexpr (T0 < T) {
    constexpr int G = T - T0 < group_tokens(R) ? T - T0 : group_tokens(R);
    F::template dots<R, G>(rows, tk + T0, acc, T0);
    token_groups<F, R, T, T0 + G>(rows, tk, acc);
  }
}

// R rows x T tokens: per super-block each row is made ready once for the T tokens.
template <class F, int R, int T>
void tile_blocks(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
                 int64_t ldy) {
  using Block = typename F::Block;
  const int64_t nb = n_in / ops::kQKK;
  typename F::Row rows[R];
  __m256 acc[R][kMaxTileT];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const Block* blk = reinterpret_cast<const Block*>(w + r * w_stride) + b;
      prefetch_ahead(blk, sizeof(Block));
      F::load(blk, rows[r]);
    }
    typename F::Token tk[T];
    for (int t = 0; t < T; ++t) tk[t] = F::token(x.data + (t0 + t) * x.stride, b);
    token_groups<F, R, T, 0>(rows, tk, acc);
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = hsum(acc[r][t]);
  }
}

// 16-bit levels: rows unpacked to int16 in an L1 scratch, ActQ16K tokens.
template <class K>
struct Fam16 {
  using Block = typename K::Block;
  using Row = Unpacked;
  using Token = TokenBlock;
  static void load(const Block* blk, Row& u) {
    int16_t* wq = u.wq;
    unpack(blk, u.rs, [wq](int i, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(wq + 16 * i), v); });
  }
  static Token token(const uint8_t* row, int64_t b) {
    return token_block<K>(reinterpret_cast<const ActQ16K*>(row) + b);
  }
  template <int R, int G>
  static void dots(const Row* u, const Token* tb, __m256 (*acc)[kMaxTileT], int t0) {
    block_dots<K, R, G>(u, tb, acc, t0);
  }
};

template <class V, class K>
struct Tiles {
  // decode: 4 rows per tile; prefill: 2 x 12 (register blocks of 2 rows x 4 tokens)
  static constexpr TileShape kShape = {4, 12, 4, 2, 12};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    if constexpr (T == 1) {
      tile_t1<K, R>(w, w_stride, x, t0, n_in, y);
    } else {
      tile_blocks<Fam16<K>, R, T>(w, w_stride, x, t0, n_in, y, ldy);
    }
  }
};

struct Avx2 {};

// ---- Q4_K with 8-bit activation levels (act_bits 8): Q8K rows (ActQ8K super-blocks) ----
// Per sub-block j of 32 values: maddubs of the weight nibbles (u8, <= 15) and the token's bytes
// (s8, |q| <= 127) gives 16 int16 pair sums (<= 2 * 15 * 127 = 3810, no saturation), and madd with
// the sub-block scale (<= 63) widens them to 8 int32 lanes (<= 2 * 3810 * 63 per lane and
// sub-block, 8 sub-blocks: < 2^22): the exact super-block sum S, then the same two FMAs as the
// 16-bit tiles (m_x = ActQ8K::ms). Per (row, token, super-block): 8 maddubs + 8 madd (16-bit
// tiles: 16 madd + 16 add).

// One Q4_K super-block of one row, ready for the byte dots.
struct W8 {
  alignas(32) uint8_t q[8][32];   // [8 sub-blocks][32] nibbles, sub-block j's values in order
  alignas(32) int16_t sc[8][16];  // [8][16] sub-block scale j in every lane
  RowScales rs;
};

AKVQ_ALWAYS_INLINE void load_w8(const BlockQ4_K* b, W8& w) {
  uint64_t sc8, mn8;
  ops::q4k_scales_mins(b->scales, sc8, mn8);
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int k = 0; k < 4; ++k) {  // bytes 32k ..: low nibbles = sub-block 2k, high = 2k + 1
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * k));
    _mm256_store_si256(reinterpret_cast<__m256i*>(w.q[2 * k]), _mm256_and_si256(v, m4));
    _mm256_store_si256(reinterpret_cast<__m256i*>(w.q[2 * k + 1]), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
  }
  for (int j = 0; j < 8; ++j) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(w.sc[j]), _mm256_set1_epi16(static_cast<int16_t>((sc8 >> (8 * j)) & 0xff)));
  }
  w.rs = q4k_row_scales(b, mn8);
}

// Byte offset of sub-block j in an ActQ8K's qs (ops/qblocks.h: chunk 2m + h holds sub-blocks
// 4m + h and 4m + 2 + h).
constexpr int q8k_offset(int j) {
  return 64 * (2 * (j / 4) + j % 2) + 32 * ((j % 4) / 2);
}

// acc[r][t0 + g] += rows r < R . tokens g < G over one super-block.
template <int R, int G>
AKVQ_ALWAYS_INLINE void block_dots8(const W8* w, const ops::ActQ8K* const* x, __m256 (*acc)[kMaxTileT], int t0) {
  __m256i s[R][G];
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) s[r][g] = _mm256_setzero_si256();
  }
  for (int j = 0; j < 8; ++j) {
    for (int r = 0; r < R; ++r) {
      const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(w[r].q[j]));
      const __m256i sv = _mm256_load_si256(reinterpret_cast<const __m256i*>(w[r].sc[j]));
      for (int g = 0; g < G; ++g) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[g]->qs + q8k_offset(j)));
        s[r][g] = _mm256_add_epi32(s[r][g], _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), sv));
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) {
      __m256& a = acc[r][t0 + g];
      a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][g]), _mm256_mul_ps(w[r].rs.dw, _mm256_set1_ps(x[g]->d)), a);
      a = _mm256_fmadd_ps(w[r].rs.mw, _mm256_loadu_ps(x[g]->ms), a);
    }
  }
}

// 8-bit levels: Q4_K rows as nibble bytes and scale words, ActQ8K tokens.
struct Fam8 {
  using Block = BlockQ4_K;
  using Row = W8;
  using Token = const ops::ActQ8K*;
  static void load(const Block* blk, Row& w) { load_w8(blk, w); }
  static Token token(const uint8_t* row, int64_t b) { return reinterpret_cast<const ops::ActQ8K*>(row) + b; }
  template <int R, int G>
  static void dots(const Row* w, const Token* x, __m256 (*acc)[kMaxTileT], int t0) {
    block_dots8<R, G>(w, x, acc, t0);
  }
};

template <class V, class K>
struct Tiles8 {
  static constexpr TileShape kShape = {4, 12, 4, 2, 12, ActFormat::Q8K};
  template <int R, int T>
  static void fn(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y, int64_t ldy) {
    tile_blocks<Fam8, R, T>(w, w_stride, x, t0, n_in, y, ldy);
  }
};

}  // namespace

const TileKernels* simd_kernels_kquant(DType t) {
  return find_tiles<Tiles, Avx2, KQ4_K, KQ6_K>(t);
}

const TileKernels* simd_kernels_kquant_act8(DType t) {
  return find_tiles<Tiles8, Avx2, KQ4_K>(t);
}

#else

const TileKernels* simd_kernels_kquant_act8(DType) {
  return nullptr;
}

#if !defined(AKVQ_NEON)  // neither AVX2 nor NEON (qgemm_kquant_neon.cpp)

const TileKernels* simd_kernels_kquant(DType) {
  return nullptr;
}

#endif
#endif

}  // namespace akvq::cpu
