// Test helpers: seeded Gaussian data and the error measure the parity tests use.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace akvq::test {

// x[n] ~ N(0, sd²), seeded.
inline std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> x(n);
  for (float& f : x) f = d(g);
  return x;
}

// max |want − got| / max(1, max |want|) over n values.
inline double max_rel_err(const float* want, const float* got, size_t n) {
  double mx = 0, err = 0;
  for (size_t i = 0; i < n; ++i) {
    mx = std::max(mx, std::fabs(double(want[i])));
    err = std::max(err, std::fabs(double(want[i]) - got[i]));
  }
  return err / std::max(1.0, mx);
}
inline double max_rel_err(const std::vector<float>& want, const std::vector<float>& got) {
  return max_rel_err(want.data(), got.data(), std::min(want.size(), got.size())) +
         (want.size() == got.size() ? 0.0 : 1e30);
}

}  // namespace akvq::test
