// One cache-line prefetch request, the primitive under every software prefetch of the CPU kernels
// (the weights ahead of the matmul tiles, cpu/simd.h; the KV rows ahead of the attention,
// kv/attend_tile.h). No effect on values, never faults.
//
// It is an asm statement, not __builtin_prefetch: GCC 12 counts the builtin as free of side
// effects, so a small helper made only of such requests is judged a const function and its calls
// are deleted (the KV rows' helper tile::request_ahead compiled to nothing; bench/RESULTS.md).
#pragma once
#include <cstddef>

namespace akvq::cpu {

inline void prefetch_line(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#elif defined(__aarch64__)
  asm volatile("prfm pldl1keep, [%0]" : : "r"(p));
#else
  __builtin_prefetch(p);
#endif
}

// The same request for the L2 only: for data wanted later than the L1 can keep it (the next block
// of KV rows, kv/attend_tile.h; the weights ahead of the matmul tiles, cpu/simd.h).
inline void prefetch_line_l2(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(p)));
#elif defined(__aarch64__)
  asm volatile("prfm pldl2keep, [%0]" : : "r"(p));
#else
  __builtin_prefetch(p, 0, 2);
#endif
}

// Requests the cache lines of the bytes [p, p + n) (a row, a block of packed rows, the start of a
// stream of weights), by prefetch_line, or by prefetch_line_l2 into the L2 only (L2).
// (cpu::prefetch_ahead, cpu/simd.h, is the tiles' version: a fixed distance past what they read.)
template <bool L2 = false>
inline void prefetch_span(const void* p, size_t n) {
  const auto request = [](const char* line) { L2 ? prefetch_line_l2(line) : prefetch_line(line); };
  const char* c = static_cast<const char*>(p);
  for (size_t i = 0; i < n; i += 64) request(c + i);
  if (n > 0) request(c + n - 1);  // the last line when the span does not start on one
}

}  // namespace akvq::cpu
