// QuantSpec validation, level tables (Lloyd–Max codebooks computed by Lloyd iteration), RowCodec
// dispatch between the AVX-512 attention kernels (quant_avx512.cpp, 2-bit, when the CPU has
// them), the AVX2 or NEON kernels (quant_avx2.cpp, quant_neon.cpp) and the scalar references
// (quant_ref.cpp).
#include "kv/quant.h"

#include <akvq/error.h>

#include "cpu/isa.h"
#include "cpu/simd.h"

#include <array>
#include <cmath>
#include <string>
#include <vector>

namespace akvq::kv {

namespace {

[[noreturn]] void bad(const char* field, const std::string& what) {
  throw InvalidArgument(std::string("[kv] quant spec: ") + field + " " + what);
}

// Lloyd–Max quantizer of N(0,1) with k levels: alternate "thresholds = midpoints of levels" and
// "level = conditional mean of its cell", E[X | a < X < b] = (φ(a) − φ(b)) / (Φ(b) − Φ(a)).
std::vector<float> lloyd_max_gaussian(int k) {
  const double inv_sqrt2pi = 0.39894228040143267794;
  auto pdf = [&](double x) { return std::isinf(x) ? 0.0 : inv_sqrt2pi * std::exp(-0.5 * x * x); };
  auto cdf = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  std::vector<double> lv(k);
  for (int i = 0; i < k; ++i) lv[i] = -3.0 + 6.0 * (i + 0.5) / k;
  for (int it = 0; it < 100000; ++it) {
    double change = 0;
    std::vector<double> nl(k);
    for (int i = 0; i < k; ++i) {
      const double a = i == 0 ? -INFINITY : 0.5 * (lv[i - 1] + lv[i]);
      const double b = i == k - 1 ? INFINITY : 0.5 * (lv[i] + lv[i + 1]);
      nl[i] = (pdf(a) - pdf(b)) / (cdf(b) - cdf(a));
      change = std::max(change, std::fabs(nl[i] - lv[i]));
    }
    lv = nl;
    if (change < 1e-13) break;
  }
  return std::vector<float>(lv.begin(), lv.end());
}

struct Tables {
  std::array<std::vector<float>, 9> uniform, gaussian;
  Tables() {
    for (int b : {2, 3, 4, 8}) {
      uniform[b].resize(1u << b);
      for (int c = 0; c < (1 << b); ++c) uniform[b][c] = static_cast<float>(c);
    }
    for (int b : {2, 3, 4}) gaussian[b] = lloyd_max_gaussian(1 << b);
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

Levels parse_levels(const std::string& s) {
  if (s == "uniform") return Levels::Uniform;
  if (s == "gaussian") return Levels::Gaussian;
  bad("levels", "must be 'uniform' or 'gaussian' (got '" + s + "')");
}

const char* levels_name(Levels l) {
  return l == Levels::Gaussian ? "gaussian" : "uniform";
}

int QuantSpec::group_size(int n) const {
  if (group != 0) return group;
  if (n <= 128) return n;
  for (int g = 128; g >= 8; g -= 8) {
    if (n % g == 0) return g;
  }
  return n;
}

void QuantSpec::validate(int n) const {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    bad("bits", "must be 2, 3, 4 or 8 (got " + std::to_string(bits) + ")");
  }
  if (levels != Levels::Uniform && levels != Levels::Gaussian) bad("levels", "is not a known level kind");
  if (levels == Levels::Gaussian && bits == 8) bad("levels", "'gaussian' supports 2, 3 or 4 bits (got 8)");
  if (!(std::isfinite(clip) && clip > 0.0f))
    bad("clip", "must be a finite number > 0 (got " + std::to_string(clip) + ")");
  if (n <= 0 || n % 8 != 0)
    bad("group", "row length (head_dim) must be a positive multiple of 8 (got " + std::to_string(n) + ")");
  if (group < 0) bad("group", "must be >= 0 (got " + std::to_string(group) + ")");
  const int g = group_size(n);
  if (g % 8 != 0 || n % g != 0) {
    bad("group", "must be a multiple of 8 dividing head_dim " + std::to_string(n) + " (got " + std::to_string(g) + ")");
  }
}

const float* level_table(int bits, Levels levels) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    bad("bits", "must be 2, 3, 4 or 8 (got " + std::to_string(bits) + ")");
  const Tables& t = tables();
  if (levels == Levels::Gaussian) {
    if (bits == 8) bad("levels", "'gaussian' supports 2, 3 or 4 bits (got 8)");
    return t.gaussian[bits].data();
  }
  return t.uniform[bits].data();
}

size_t bytes_per_row(const QuantSpec& spec, int n) {
  spec.validate(n);
  return static_cast<size_t>(n / spec.group_size(n)) * 4 + static_cast<size_t>(n) * spec.bits / 8;
}

bool simd::lut_available(const QuantSpec& spec, int group, int n) {
#if defined(AKVQ_AVX2) || defined(AKVQ_NEON)  // quant_lut_avx2.cpp, quant_lut_neon.cpp
  return spec.bits == 2 && group == n && n % 64 == 0 && n <= kMaxLutRow;
#else
  (void)spec, (void)group, (void)n;
  return false;
#endif
}

// ---------------------------------------------------------------- RowCodec

RowCodec::RowCodec(const QuantSpec& spec, int n) : spec_(spec), n_(n) {
  spec.validate(n);
  group_ = spec.group_size(n);
  spec_.group = group_;
  row_bytes_ = static_cast<size_t>(n / group_) * 4 + static_cast<size_t>(n) * spec.bits / 8;
  levels_ = level_table(spec.bits, spec.levels);
  simd_ = simd::available(spec_, group_) && n_ <= simd::kMaxRow;
  wide_ = cpu::active_isa() == cpu::Isa::Avx512 && simd512::available(spec_, group_, n_) && n_ <= simd::kMaxRow;
  // The table kernels score 2-bit rows on AVX-512 machines too: on a 2-core Zen 5 VM, SmolLM2
  // akvq2 decode at depth 7.7k ran 98 / 106 t/s with the AVX-512 scores, 122 / 117 with the tables
  // (akvq-cli, two interleaved rounds). `lut=0` keeps the AVX-512 scores.
  lut_ = spec_.lut && simd_ && cpu::active_isa() != cpu::Isa::Scalar && simd::lut_available(spec_, group_, n_);
  lut_wide_ = lut_ && cpu::active_isa() == cpu::Isa::Avx512;
}

void RowCodec::quantize(const float* x, uint8_t* out) const {
  quantize_rows(x, n_, 1, out, row_bytes_);
}

void RowCodec::quantize_rows(const float* x, int64_t x_stride, int64_t n_rows, uint8_t* out, size_t out_stride) const {
  if (simd_) {
    simd::quantize_rows(spec_, group_, levels_, x, x_stride, n_rows, n_, out, out_stride);
    return;
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    ref::quantize_row(spec_, group_, levels_, x + r * x_stride, n_, out + r * out_stride);
  }
}

void RowCodec::dequantize(const uint8_t* row, float* out) const {
  ref::dequantize_row(spec_, group_, levels_, row, n_, out);
}

void RowCodec::query_group_sums(const float* q, float* qsum) const {
  for (int g = 0; g < n_ / group_; ++g) {
    float s = 0;
    for (int i = 0; i < group_; ++i) s += q[g * group_ + i];
    qsum[g] = s;
  }
}

void RowCodec::scores(const float* q, const float* qsum, const uint8_t* rows, size_t stride, int64_t n_rows,
                      float* out) const {
  if (n_rows <= 0) return;
  if (lut_) {
    (lut_wide_ ? simd512::scores_lut : simd::scores_lut)(levels_, q, 0, qsum, 0, 1, n_, rows, stride, n_rows, out, 0, nullptr,
                                                         nullptr);
  } else if (wide_) {
    simd512::scores_multi(spec_, group_, levels_, q, 0, qsum, 0, 1, n_, rows, stride, n_rows, out, 0);
  } else if (simd_) {
    simd::scores(spec_, group_, levels_, q, qsum, n_, rows, stride, n_rows, out);
  } else {
    ref::scores(spec_, group_, levels_, q, qsum, n_, rows, stride, n_rows, out);
  }
}

size_t RowCodec::lut_query_bytes() const {
  return lut_ ? simd::lut_query_bytes(n_) : 0;
}

LutQuery RowCodec::lut_prepare(const float* q, void* tab) const {
  if (!lut_) throw InvalidArgument("[kv] lut_prepare: this codec does not score from tables");
  if (reinterpret_cast<uintptr_t>(tab) % 32 != 0) throw InvalidArgument("[kv] lut_prepare: tables not 32-byte aligned");
  LutQuery t;
  t.tab = tab;
  t.s = simd::lut_prepare(levels_, q, n_, tab);
  return t;
}

void RowCodec::accumulate(const float* p, const uint8_t* rows, size_t stride, int64_t n_rows, float* acc) const {
  if (n_rows <= 0) return;
  if (wide_) {
    simd512::accumulate_multi(spec_, group_, levels_, p, 0, 1, rows, stride, n_rows, n_, acc, 0);
  } else if (simd_) {
    simd::accumulate(spec_, group_, levels_, p, rows, stride, n_rows, n_, acc);
  } else {
    ref::accumulate(spec_, group_, levels_, p, rows, stride, n_rows, n_, acc);
  }
}

void RowCodec::scores_multi(const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                            const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                            const RowsAhead* ahead, const LutQuery* pre) const {
  if (n_rows <= 0 || nq <= 0) return;
  if (nq > kMaxQueries) throw InvalidArgument("[kv] scores_multi: nq > kMaxQueries");
  if (lut_) {  // the table kernels spread the requests over their blocks
    (lut_wide_ ? simd512::scores_lut : simd::scores_lut)(levels_, q, q_stride, qsum, qsum_stride, nq, n_, rows, stride,
                                                         n_rows, out, out_stride, ahead, pre);
    return;
  }
  request_ahead(ahead, 0, n_rows, n_rows);
  if (wide_) {
    simd512::scores_multi(spec_, group_, levels_, q, q_stride, qsum, qsum_stride, nq, n_, rows, stride, n_rows, out,
                          out_stride);
  } else if (simd_) {
    simd::scores_multi(spec_, group_, levels_, q, q_stride, qsum, qsum_stride, nq, n_, rows, stride, n_rows, out,
                       out_stride);
  } else {
    for (int j = 0; j < nq; ++j) {
      ref::scores(spec_, group_, levels_, q + j * q_stride, qsum + j * qsum_stride, n_, rows, stride, n_rows,
                  out + j * out_stride);
    }
  }
}

void RowCodec::accumulate_multi(const float* p, size_t p_stride, int nq, const uint8_t* rows, size_t stride,
                                int64_t n_rows, float* acc, size_t acc_stride, const RowsAhead* ahead) const {
  if (n_rows <= 0 || nq <= 0) return;
  if (nq > kMaxQueries) throw InvalidArgument("[kv] accumulate_multi: nq > kMaxQueries");
  if (wide_) {
    simd512::accumulate_multi(spec_, group_, levels_, p, p_stride, nq, rows, stride, n_rows, n_, acc, acc_stride,
                              ahead);
  } else if (simd_) {
    simd::accumulate_multi(spec_, group_, levels_, p, p_stride, nq, rows, stride, n_rows, n_, acc, acc_stride, ahead);
  } else {
    request_ahead(ahead, 0, n_rows, n_rows);
    for (int j = 0; j < nq; ++j) {
      ref::accumulate(spec_, group_, levels_, p + j * p_stride, rows, stride, n_rows, n_, acc + j * acc_stride);
    }
  }
}

// ---------------------------------------------------------------- free functions

void quantize_row(const QuantSpec& spec, const float* x, int n, uint8_t* out) {
  RowCodec(spec, n).quantize(x, out);
}

void dequantize_row(const QuantSpec& spec, const uint8_t* row, int n, float* out) {
  RowCodec(spec, n).dequantize(row, out);
}

void query_group_sums(const QuantSpec& spec, const float* q, int n, float* qsum) {
  RowCodec(spec, n).query_group_sums(q, qsum);
}

void scores_rows(const QuantSpec& spec, const float* q, const float* qsum, int n, const uint8_t* rows, size_t stride,
                 int64_t n_rows, float* out) {
  RowCodec(spec, n).scores(q, qsum, rows, stride, n_rows, out);
}

void accumulate_rows(const QuantSpec& spec, const float* p, const uint8_t* rows, size_t stride, int64_t n_rows, int n,
                     float* acc) {
  RowCodec(spec, n).accumulate(p, rows, stride, n_rows, acc);
}

}  // namespace akvq::kv
