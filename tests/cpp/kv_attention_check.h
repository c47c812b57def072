// Shared check of the multi-query attention kernels (RowCodec::scores_multi / accumulate_multi)
// for test_kv_quant_multi.cpp and test_kv_quant_simd.cpp: rows quantized with padded strides (row 1
// with a constant first group when there are more than 2 rows), then scores and accumulation
// against the same products computed in double on the dequantized rows (tolerance 1e-5 * sum|term|
// + 1e-6; with pv_bf16 on a codec that takes the accumulate's products from bf16 pairs,
// RowCodec::pv_bf16, plus their rounding bound: 2^-7 of Σ_t p_t·|scale·L| per channel, see
// scaled_levels), and nothing written past the outputs or the packed rows.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kv/quant.h"

namespace akvq::test {

// out[n] = |scale·L| of each value of a packed row: the row dequantized with its group offsets
// set to 0 (group g's header: the fp16 scale, then the fp16 offset, at bytes 4g .. 4g + 3).
inline void scaled_levels(const akvq::kv::RowCodec& codec, const uint8_t* row, float* out) {
  std::vector<uint8_t> r(row, row + codec.row_bytes());
  for (int g = 0; g < codec.n_groups(); ++g) r[4 * g + 2] = r[4 * g + 3] = 0;
  codec.dequantize(r.data(), out);
  for (int e = 0; e < codec.n(); ++e) out[e] = std::fabs(out[e]);
}

// The bf16 pairs' rounding bound of one product p·scale·L: p·scale and L each rounded to bf16
// (8 significant bits: relative error <= 2^-8 each; (1 + 2^-8)² − 1 < 2^-7 · 1.002).
constexpr double kPvBf16Bound = 0.0078125 * 1.002;

inline void check_attention_multi(int n, int bits, int group, akvq::kv::Levels lv, int nq, int n_rows, std::mt19937& rng,
                                  bool pv_bf16 = false) {
  akvq::kv::QuantSpec s;
  s.bits = bits, s.group = group, s.levels = lv, s.clip = bits == 2 ? 0.8f : 1.0f;
  s.pv_bf16 = pv_bf16;
  const akvq::kv::RowCodec codec(s, n);
  const size_t stride = codec.row_bytes() + static_cast<size_t>(n_rows % 3);
  constexpr float kCanary = -3.5f;
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_rows) * n);
  for (auto& v : x) v = -0.2f + 1.3f * nd(rng);
  if (n_rows > 2) {
    for (int i = 0; i < group; ++i) x[static_cast<size_t>(n) + i] = 0.75f;  // row 1: a constant first group
  }
  std::vector<uint8_t> rows(stride * n_rows + 7, 0x3C);
  codec.quantize_rows(x.data(), n, n_rows, rows.data(), stride);
  std::vector<float> xh(x.size());
  for (int r = 0; r < n_rows; ++r) codec.dequantize(&rows[r * stride], &xh[static_cast<size_t>(r) * n]);
  std::vector<float> sl(codec.pv_bf16() ? x.size() : 0);  // |scale·L| where the products are bf16 pairs
  for (int r = 0; r < n_rows && codec.pv_bf16(); ++r) scaled_levels(codec, &rows[r * stride], &sl[static_cast<size_t>(r) * n]);

  const size_t qst = n + 4, qsst = codec.n_groups() + 1, ost = n_rows + 3, pst = n_rows + 1, ast = n + 8;
  std::vector<float> q(qst * nq), qsum(qsst * nq), p(pst * nq);
  for (auto& v : q) v = nd(rng);
  for (auto& v : p) v = u(rng);
  for (int j = 0; j < nq; ++j) codec.query_group_sums(&q[j * qst], &qsum[j * qsst]);
  std::vector<float> out(ost * nq, kCanary), acc(ast * nq, kCanary);
  for (int j = 0; j < nq; ++j) {
    for (int i = 0; i < n; ++i) acc[j * ast + i] = 0.25f * nd(rng);
  }
  const std::vector<float> acc0 = acc;
  codec.scores_multi(q.data(), qst, qsum.data(), qsst, nq, rows.data(), stride, n_rows, out.data(), ost);
  codec.accumulate_multi(p.data(), pst, nq, rows.data(), stride, n_rows, acc.data(), ast);

  const std::string what = "n " + std::to_string(n) + " bits " + std::to_string(bits) + " group " +
                           std::to_string(group) + " " + akvq::kv::levels_name(lv) + " nq " + std::to_string(nq) +
                           " rows " + std::to_string(n_rows) + (codec.simd() ? " simd" : " ref") +
                           (codec.pv_bf16() ? " bf16 pairs" : "");
  for (int j = 0; j < nq; ++j) {
    for (int t = 0; t < n_rows; ++t) {
      double e = 0, mag = 0;
      for (int i = 0; i < n; ++i) {
        const double term = static_cast<double>(q[j * qst + i]) * xh[static_cast<size_t>(t) * n + i];
        e += term, mag += std::fabs(term);
      }
      ASSERT_NEAR(out[j * ost + t], e, 1e-5 * mag + 1e-6) << what << " score j=" << j << " t=" << t;
    }
    for (size_t t = n_rows; t < ost; ++t) ASSERT_EQ(out[j * ost + t], kCanary) << what << " wrote past row " << t;
    for (int i = 0; i < n; ++i) {
      double e = acc0[j * ast + i], mag = std::fabs(e), bf = 0;
      for (int t = 0; t < n_rows; ++t) {
        const double term = static_cast<double>(p[j * pst + t]) * xh[static_cast<size_t>(t) * n + i];
        e += term, mag += std::fabs(term);
        if (!sl.empty()) bf += p[j * pst + t] * static_cast<double>(sl[static_cast<size_t>(t) * n + i]);
      }
      ASSERT_NEAR(acc[j * ast + i], e, 1e-5 * mag + 1e-6 + kPvBf16Bound * bf) << what << " acc j=" << j << " i=" << i;
    }
    for (size_t i = n; i < ast; ++i) ASSERT_EQ(acc[j * ast + i], kCanary) << what << " wrote past channel " << i;
  }
  for (size_t b = stride * n_rows; b < rows.size(); ++b) ASSERT_EQ(rows[b], 0x3C) << what << " quantize wrote past";
}

}  // namespace akvq::test
