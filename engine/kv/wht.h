// Normalized fast Walsh–Hadamard transform (WHT) used to rotate K, V and queries in the AKVQ cache.
// For a power-of-two d, H = Sylvester Hadamard matrix / sqrt(d): symmetric, orthonormal, H·H = I.
// For other d, H is block-diagonal over the binary decomposition of d, largest block first
// (80 = 64 + 16, 96 = 64 + 32, 7 = 4 + 2 + 1); each block is a normalized WHT of its size, so H
// stays symmetric, orthonormal and self-inverse. O(d log d); AVX2 with a scalar fallback.
#pragma once
#include <cstdint>

namespace akvq::kv {

// In place on x[d] (d >= 1). Throws InvalidArgument for d < 1.
void wht(float* x, int d);

// In place on n_rows rows of d values; row r starts at x + r * stride (stride >= d, in floats).
void wht_rows(float* x, int64_t n_rows, int d, int64_t stride);
inline void wht_rows(float* x, int64_t n_rows, int d) {
  wht_rows(x, n_rows, d, d);
}

// Scalar reference (same result up to rounding); used by the parity tests.
void wht_ref(float* x, int d);

// Size of the largest power-of-two block of d (its first block); 0 for d < 1.
int wht_first_block(int d);

}  // namespace akvq::kv
