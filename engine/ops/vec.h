// Portable 8-float vectors (GCC/Clang vector extensions) and branch-free exp() used by the
// vision-transformer ops (nn.cpp, attention.cpp). The compiler maps v8 to AVX2 / NEON pairs /
// scalar code; no ISA intrinsics here, so the same file builds for every target.
#pragma once
#include <cstdint>
#include <cstring>

// These helpers pass vectors by value; GCC warns that 32/64-byte vectors change the calling
// convention when the build's ISA lacks AVX/AVX-512. Every translation unit of the engine is
// compiled with the same flags and the helpers are inline, so no call crosses two conventions.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace akvq::ops::vec {

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));  // unaligned access

inline v8 load8(const float* p) {
  return *reinterpret_cast<const v8u*>(p);
}
inline void store8(float* p, const v8& v) {
  *reinterpret_cast<v8u*>(p) = v;
}
inline v8 splat8(float x) {
  return v8{x, x, x, x, x, x, x, x};
}
// 16-float vectors: one AVX-512 register where the build targets it, two AVX2 / four NEON
// registers elsewhere (the compiler splits them).
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned access

inline v16 load16(const float* p) {
  return *reinterpret_cast<const v16u*>(p);
}
inline void store16(float* p, const v16& v) {
  *reinterpret_cast<v16u*>(p) = v;
}
inline v16 splat16(float x) {
  return v16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}

// ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)): a fixed order.
inline float hsum8(const v8& a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

typedef uint32_t v16u32 __attribute__((vector_size(64)));

// e^x for any finite x: inputs are clamped to [-87, 88] (so e^-inf gives ~1.6e-38). Relative
// error < 3e-7. Branch-free; F = float (U = uint32_t) or v16 (U = v16u32), the same operations
// lane by lane, so a value gets the same bits from either form.
template <class F, class U>
inline F exp_clamped_any(F x) {
  const F lo = F{} - 87.0f, hi = F{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const F t = x * 1.44269504f + 12582912.0f;  // + 1.5 * 2^23 rounds to an integer
  U tb;
  std::memcpy(&tb, &t, sizeof(F));
  const F fn = t - 12582912.0f;                             // round(x / ln2)
  const F r = x - fn * 0.693145752f - fn * 1.42860677e-6f;  // |r| <= ln2 / 2
  F p = F{} + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const U bits = (tb - 0x4B400000u + 127u) << 23;  // 2^round(x / ln2)
  F s;
  std::memcpy(&s, &bits, sizeof(F));
  return p * s;
}
inline float exp_clamped(float x) {
  return exp_clamped_any<float, uint32_t>(x);
}
inline v16 exp_clamped16(v16 x) {
  return exp_clamped_any<v16, v16u32>(x);
}

}  // namespace akvq::ops::vec
