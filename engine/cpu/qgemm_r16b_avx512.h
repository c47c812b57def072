// The byte-dot core of the AVX-512 R16B tiles (cpu/qgemm.h: 16 rows interleaved, lanes are rows),
// shared by qgemm_q32_r16b_avx512.cpp (Q4_0, Q4_1, Q8_0) and qgemm_kquant_r16b_avx512.cpp (Q4_K,
// Q6_K). Empty without AVX-512 kernels. Include it before AKVQ_AVX512_BEGIN: its functions carry
// the AVX-512 target themselves.
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu/avx512_target.h"
#include "cpu/tile_driver.h"

#if defined(AKVQ_HAVE_AVX512_KERNELS)
namespace akvq::cpu::r16b {

AKVQ_AVX512_BEGIN

// The 4 bytes at p in every int32 lane.
inline __m512i bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// s[t] = seed + the exact integer sum of the N operands op[i] (4 weight bytes per row lane)
// against token t's 4 bytes h at x[t] + off(i), and with 16-bit levels (L) its 4 bytes l at
// x[t] + off(i) + l_delta: (seed + h pass) << 8 + (l pass); else seed + h pass. SignedW: the
// weights are the signed operand of the h pass and h the unsigned one (Q8_0: h stored + 128, the
// seed takes the offset back); else the weights are unsigned (0..63) and h signed. l is unsigned,
// so the weights are the signed operand of the l pass.
// Decode (T == 1): the h and l passes as independent chains, each split in two (operands i even /
// odd), so that one token is not bound by the byte dot's latency (1.1B Q4_0 decode in cache
// +20%, bench/RESULTS.md). Several tokens: operand-major, tokens inner, one chain per token (the
// T chains are independent and the tile stays in the registers). The sums are exact integers, so
// how they are split changes no bit.
template <bool L, bool SignedW, int T, int N, class Off>
AKVQ_ALWAYS_INLINE void dot_bytes(const __m512i* op, __m512i seed, const uint8_t* const* x, Off off, int l_delta,
                                  __m512i* s) {
  const auto hdot = [](__m512i acc, __m512i w, __m512i h) {
    return SignedW ? _mm512_dpbusd_epi32(acc, h, w) : _mm512_dpbusd_epi32(acc, w, h);
  };
  if constexpr (T == 1) {
    __m512i hs[2] = {seed, _mm512_setzero_si512()}, ls[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int i = 0; i < N; ++i) {
      hs[i % 2] = hdot(hs[i % 2], op[i], bcast32(x[0] + off(i)));
      if constexpr (L) ls[i % 2] = _mm512_dpbusd_epi32(ls[i % 2], bcast32(x[0] + off(i) + l_delta), op[i]);
    }
    const __m512i hh = _mm512_add_epi32(hs[0], hs[1]);
    s[0] = L ? _mm512_add_epi32(_mm512_slli_epi32(hh, 8), _mm512_add_epi32(ls[0], ls[1])) : hh;
  } else {
#pragma GCC unroll 12
    for (int t = 0; t < T; ++t) s[t] = seed;
    for (int i = 0; i < N; ++i) {
#pragma GCC unroll 12
      for (int t = 0; t < T; ++t) s[t] = hdot(s[t], op[i], bcast32(x[t] + off(i)));
    }
    if constexpr (L) {
#pragma GCC unroll 12
      for (int t = 0; t < T; ++t) s[t] = _mm512_slli_epi32(s[t], 8);
      for (int i = 0; i < N; ++i) {
#pragma GCC unroll 12
        for (int t = 0; t < T; ++t) s[t] = _mm512_dpbusd_epi32(s[t], bcast32(x[t] + off(i) + l_delta), op[i]);
      }
    }
  }
}

AKVQ_AVX512_END

}  // namespace akvq::cpu::r16b
#endif
