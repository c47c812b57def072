// Shared by the CUDA kernels and the CPU tests: functions compiled for the device by nvcc and
// for the host by any C++17 compiler (the tests include this header without CUDA and compare
// with the CPU engine). No engine headers, no CUDA headers when not compiled by nvcc.
//
// Bit-exact building blocks:
//   half_to_float / float_to_half   IEEE binary16 <-> binary32, round to nearest even
//   mul_rn / sub_rn / dmul_rn / ...  one IEEE operation, never contracted into an FMA, so the
//                                    device and the host (whatever -ffp-contract) round alike
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define AKVQ_HD __host__ __device__ __forceinline__
#else
#define AKVQ_HD inline
#endif

namespace akvq_cuda {

AKVQ_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

AKVQ_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// binary16 bits -> float (exact for every value, subnormals, inf and NaN included).
AKVQ_HD float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    exp = 127 - 15 + 1;  // subnormal: normalise
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    return bits_f32(sign | (exp << 23) | ((mant & 0x3ffu) << 13));
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

// float -> binary16 bits, round to nearest even; overflow gives inf, NaN stays NaN.
AKVQ_HD uint16_t float_to_half(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (absx < 0x38800000u) {  // subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(e);
    const uint32_t half = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    return static_cast<uint16_t>(sign | (half + ((rem > mid || (rem == mid && (half & 1u))) ? 1u : 0u)));
  }
  uint32_t r = absx - 0x38000000u;  // rebias the exponent
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

#if !defined(__CUDA_ARCH__)
// Host: forces v to be rounded to its type before use (blocks FMA contraction across it).
template <class T>
inline T opaque(T v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(v));
  return v;
#else
  volatile T t = v;
  return t;
#endif
}
#endif

AKVQ_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return opaque(a * b);
#endif
}
AKVQ_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return opaque(a - b);
#endif
}
AKVQ_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return opaque(a + b);
#endif
}
AKVQ_HD double dmul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return opaque(a * b);
#endif
}
AKVQ_HD double dadd_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return opaque(a + b);
#endif
}

}  // namespace akvq_cuda
