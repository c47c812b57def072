// Fast Walsh–Hadamard transform: radix-2 butterflies per power-of-two block. AVX2 path: the three
// in-register stages (h = 1, 2, 4) use lane permutes and one FMA with a ±1 sign vector (exact,
// same rounding as an add/sub), the stages h >= 8 are plain vector add/sub across registers.
#include "kv/wht.h"

#include <akvq/error.h>

#include <cmath>
#include <string>

#include "cpu/simd.h"

namespace akvq::kv {

namespace {

void check_d(int d) {
  if (d < 1) throw InvalidArgument("[kv] wht: head_dim must be >= 1 (got " + std::to_string(d) + ")");
}

// Scalar normalized WHT of one power-of-two block x[m].
void block_scalar(float* x, int m) {
  for (int h = 1; h < m; h <<= 1) {
    for (int i = 0; i < m; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  const float s = 1.0f / std::sqrt(static_cast<float>(m));
  for (int i = 0; i < m; ++i) x[i] *= s;
}

#ifdef AKVQ_AVX2
// Normalized WHT of one block x[m], m a power of two >= 8.
void block_avx2(float* x, int m) {
  const __m256 s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
  const __m256 s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
  const __m256 s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
  for (int i = 0; i < m; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    v = _mm256_fmadd_ps(v, s1, _mm256_permute_ps(v, 0xB1));          // pairs
    v = _mm256_fmadd_ps(v, s2, _mm256_permute_ps(v, 0x4E));          // pairs of pairs
    v = _mm256_fmadd_ps(v, s4, _mm256_permute2f128_ps(v, v, 0x01));  // halves
    _mm256_storeu_ps(x + i, v);
  }
  for (int h = 8; h < m; h <<= 1) {
    for (int i = 0; i < m; i += 2 * h) {
      for (int j = i; j < i + h; j += 8) {
        const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
        _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
        _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
      }
    }
  }
  const __m256 s = _mm256_set1_ps(1.0f / std::sqrt(static_cast<float>(m)));
  for (int i = 0; i < m; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), s));
}
#endif

void wht_one(float* x, int d, bool simd) {
  int off = 0;
  for (int bit = 30; bit >= 0; --bit) {
    const int m = 1 << bit;
    if ((d & m) == 0) continue;
#ifdef AKVQ_AVX2
    if (simd && m >= 8) {
      block_avx2(x + off, m);
      off += m;
      continue;
    }
#endif
    (void)simd;
    block_scalar(x + off, m);
    off += m;
  }
}

}  // namespace

int wht_first_block(int d) {
  if (d < 1) return 0;
  int m = 1;
  while (m <= d / 2) m <<= 1;
  return m;
}

void wht(float* x, int d) {
  check_d(d);
  wht_one(x, d, true);
}

void wht_ref(float* x, int d) {
  check_d(d);
  wht_one(x, d, false);
}

void wht_rows(float* x, int64_t n_rows, int d, int64_t stride) {
  check_d(d);
  if (n_rows < 0 || stride < d) {
    throw InvalidArgument("[kv] wht_rows: bad n_rows " + std::to_string(n_rows) + " or stride " +
                          std::to_string(stride) + " for head_dim " + std::to_string(d));
  }
  for (int64_t r = 0; r < n_rows; ++r) wht_one(x + r * stride, d, true);
}

}  // namespace akvq::kv
