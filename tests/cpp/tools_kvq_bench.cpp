// Micro-benchmark of the attention kernels on packed KV rows vs an fp16 cache.
// For each format: scores (q · row for every row) and accumulate (acc += p_t · row_t) over
// n_rows rows of head_dim values, repeated over `heads` separate buffers (1 = the rows stay in
// cache; 90 = a SmolLM2 cache of 30 layers × 3 KV heads, read from memory as in decode).
// The quantized formats run nq queries per pass over the codes (RowCodec::scores_multi /
// accumulate_multi), as decode does for the heads of a GQA group (3 on SmolLM2) and prefill for
// 4 query rows; times are per row for all nq queries. AKVQ_ISA=avx2 caps the kernels at AVX2.
// usage: tools_kvq_bench [n_rows=4096] [head_dim=64] [heads=1,90] [reps] [nq=3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "cpu/isa.h"
#include "kv/quant.h"
#include "kv/wht.h"
#include "ops/ops.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double ns_scores, ns_acc;  // per row
};

volatile float g_sink;

template <class F>
double time_ns(F&& f, int reps) {
  f();  // warm up
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::nano>(Clock::now() - t0).count());
  }
  return best;
}

void report(const char* name, size_t row_bytes, int64_t rows_total, const Result& r) {
  const double both = r.ns_scores + r.ns_acc;
  // scores and accumulate each read every row once
  std::printf(
      "%-22s %5zu B/row  scores %6.2f ns/row %6.1f GB/s | accumulate %6.2f ns/row %6.1f GB/s | both %6.2f ns/row\n",
      name, row_bytes, r.ns_scores, row_bytes / r.ns_scores, r.ns_acc, row_bytes / r.ns_acc, both);
  (void)rows_total;
}

}  // namespace

int main(int argc, char** argv) {
  const int n_rows = argc > 1 ? std::atoi(argv[1]) : 4096;
  const int d = argc > 2 ? std::atoi(argv[2]) : 64;
  std::vector<int> heads_list = {1, 90};
  if (argc > 3) heads_list = {std::atoi(argv[3])};
  const int reps_arg = argc > 4 ? std::atoi(argv[4]) : 0;
  const int nq = argc > 5 ? std::atoi(argv[5]) : 3;
  if (nq < 1 || nq > akvq::kv::kMaxQueries || d <= 0 || n_rows <= 0) {
    std::fprintf(stderr, "tools_kvq_bench: need n_rows > 0, head_dim > 0, 1 <= nq <= %d\n", akvq::kv::kMaxQueries);
    return 2;
  }
  std::printf("isa %s, %d quer%s per pass for the quantized formats (f16: one)\n",
              akvq::cpu::isa_name(akvq::cpu::active_isa()), nq, nq == 1 ? "y" : "ies");
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(d) * nq), p(static_cast<size_t>(n_rows) * nq),
      out(static_cast<size_t>(n_rows) * nq), acc(static_cast<size_t>(d) * nq, 0.0f);
  for (auto& v : q) v = nd(rng);
  for (auto& v : p) v = std::uniform_real_distribution<float>(0, 1)(rng);

  for (int heads : heads_list) {
    const int64_t total = static_cast<int64_t>(heads) * n_rows;
    const int reps = reps_arg > 0 ? reps_arg : std::max(3, static_cast<int>(2000000 / total));
    std::printf("== %d rows × head_dim %d × %d buffers (%.1f MB f16), best of %d\n", n_rows, d, heads,
                total * d * 2 / 1e6, reps);
    std::vector<float> x(static_cast<size_t>(total) * d);
    for (auto& v : x) v = nd(rng);
    akvq::kv::wht_rows(x.data(), total, d);

    // fp16 baseline
    std::vector<uint16_t> f16(x.size());
    akvq::ops::f32_to_f16_row(x.data(), f16.data(), static_cast<int64_t>(x.size()));
    Result rf;
    rf.ns_scores = time_ns(
                       [&] {
                         for (int h = 0; h < heads; ++h) {
                           const uint16_t* base = f16.data() + static_cast<size_t>(h) * n_rows * d;
                           for (int t = 0; t < n_rows; ++t)
                             out[t] = akvq::ops::dot_f16(q.data(), base + static_cast<size_t>(t) * d, d);
                           g_sink = out[n_rows - 1];
                         }
                       },
                       reps) /
                   total;
    rf.ns_acc = time_ns(
                    [&] {
                      for (int h = 0; h < heads; ++h) {
                        const uint16_t* base = f16.data() + static_cast<size_t>(h) * n_rows * d;
                        for (int t = 0; t < n_rows; ++t)
                          akvq::ops::axpy_f16(p[t], base + static_cast<size_t>(t) * d, acc.data(), d);
                        g_sink = acc[0];
                      }
                    },
                    reps) /
                total;
    report("f16 (dot/axpy_f16)", static_cast<size_t>(d) * 2, total, rf);

    struct Fmt {
      const char* name;
      int bits;
      akvq::kv::Levels lv;
      bool lut = false;  // QuantSpec::lut (the 2-bit rows' table scores where the CPU has them)
      bool pv_bf16 = false;  // QuantSpec::pv_bf16 (the accumulate's products from bf16 pairs, AVX-512)
    };
    const Fmt fmts[] = {{"q8 uniform", 8, akvq::kv::Levels::Uniform},
                        {"q4 uniform", 4, akvq::kv::Levels::Uniform},
                        {"q4 gaussian", 4, akvq::kv::Levels::Gaussian},
                        {"q3 uniform", 3, akvq::kv::Levels::Uniform},
                        {"q2 uniform", 2, akvq::kv::Levels::Uniform},
                        {"q2 gaussian", 2, akvq::kv::Levels::Gaussian},
                        {"q2 uniform", 2, akvq::kv::Levels::Uniform, true},
                        {"q2 gaussian", 2, akvq::kv::Levels::Gaussian, true},
                        {"q4 uniform", 4, akvq::kv::Levels::Uniform, false, true},
                        {"q2 gaussian", 2, akvq::kv::Levels::Gaussian, true, true}};
    for (const Fmt& f : fmts) {
      akvq::kv::QuantSpec s;
      s.bits = f.bits;
      s.levels = f.lv;
      s.lut = f.lut;
      s.pv_bf16 = f.pv_bf16;
      s.clip = f.bits == 2 ? 0.7f : 1.0f;
      const akvq::kv::RowCodec codec(s, d);
      const size_t rb = codec.row_bytes();
      std::vector<uint8_t> rows(rb * total);
      codec.quantize_rows(x.data(), d, total, rows.data(), rb);
      const int ng = codec.n_groups();
      std::vector<float> qsum(static_cast<size_t>(ng) * nq);
      for (int j = 0; j < nq; ++j) codec.query_group_sums(q.data() + j * d, qsum.data() + j * ng);
      Result r;
      r.ns_scores = time_ns(
                        [&] {
                          for (int h = 0; h < heads; ++h) {
                            codec.scores_multi(q.data(), d, qsum.data(), ng, nq,
                                               rows.data() + static_cast<size_t>(h) * n_rows * rb, rb, n_rows,
                                               out.data(), n_rows);
                            g_sink = out[n_rows - 1];
                          }
                        },
                        reps) /
                    total;
      r.ns_acc =
          time_ns(
              [&] {
                for (int h = 0; h < heads; ++h) {
                  codec.accumulate_multi(p.data(), n_rows, nq, rows.data() + static_cast<size_t>(h) * n_rows * rb, rb,
                                         n_rows, acc.data(), d);
                  g_sink = acc[0];
                }
              },
              reps) /
          total;
      char name[64];
      std::snprintf(name, sizeof name, "%s G%d%s%s", f.name, codec.group(), codec.lut_scores() ? " lut" : "",
                    codec.pv_bf16() ? " pv_bf16" : "");
      report(name, rb, total, r);
    }
  }
  return 0;
}
