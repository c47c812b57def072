// The CUDA kernels' row arithmetic (cuda/kv_codec.cuh, cuda/kv_attend_args.cuh) run on the host
// against the CPU engine: fp16 conversions, the WHT and the packed codes + headers bit for bit;
// scores within float rounding; and a serial emulation of the flash-decoding kernels (the same
// tiles, splits and merges, kv_attend.cu) against QuantKvCache::attend on real cache states,
// within 2e-5 relative to max|out| (summation order and expf vs the CPU's exp differ).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "cpu/thread_pool.h"
#include "cuda_spans.h"
#include "kv/kv_cache.h"
#include "kv/kv_options.h"
#include "kv/quant.h"
#include "kv/wht.h"
#include "kv_codec.cuh"
#include "nn_math.cuh"
#include "ops/ops.h"
#include "test_ops_util.h"
#include "test_random.h"
#include "weights.cuh"

using namespace akvq;
namespace kc = akvq_cuda;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

using test::randn;

}  // namespace

TEST(CudaCodec, HalfToFloatMatchesEngineForEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    ASSERT_EQ(bits_of(kc::half_to_float(static_cast<uint16_t>(h))), bits_of(fp16_to_f32(static_cast<uint16_t>(h))))
        << "half 0x" << std::hex << h;
  }
}

TEST(CudaCodec, FloatToHalfMatchesEngine) {
  std::mt19937 g(7);
  std::vector<float> xs = {0.0f,    -0.0f,    65504.0f,  65520.0f, 1e-8f,         5.96e-8f,      2.98e-8f,
                           6.1e-5f, INFINITY, -INFINITY, NAN,      1.0009765625f, 1.00048828125f};
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = g();
    float f;
    std::memcpy(&f, &u, 4);
    xs.push_back(f);
  }
  for (float f : xs) ASSERT_EQ(kc::float_to_half(f), f32_to_fp16(f)) << "bits 0x" << std::hex << bits_of(f);
}

TEST(CudaCodec, WhtMatchesEngineBitForBit) {
  for (int d : {1, 2, 3, 7, 8, 16, 32, 48, 64, 80, 96, 112, 128, 192, 256}) {
    std::vector<float> x = randn(d, 100 + d, 3.0f), y = x, z = x;
    kc::wht_row(x.data(), d);
    kv::wht_ref(y.data(), d);
    kv::wht(z.data(), d);
    for (int i = 0; i < d; ++i) {
      ASSERT_EQ(bits_of(x[i]), bits_of(y[i])) << "d=" << d << " i=" << i;
      ASSERT_EQ(bits_of(x[i]), bits_of(z[i])) << "d=" << d << " i=" << i;
    }
  }
}

namespace {

// Rows that exercise the quantizer: Gaussian, outliers, constant groups, tiny and huge values.
std::vector<float> hard_rows(int n, int rows, uint32_t seed) {
  std::vector<float> x = randn(static_cast<size_t>(n) * rows, seed, 2.0f);
  std::mt19937 g(seed + 1);
  for (int r = 0; r < rows; ++r) {
    float* xr = x.data() + static_cast<size_t>(r) * n;
    switch (r % 8) {
      case 1: xr[g() % n] *= 60.0f; break;          // an outlier
      case 2: std::fill(xr, xr + n, 0.75f); break;  // constant row
      case 3:
        for (int j = 0; j < n; ++j) xr[j] *= 1e-6f;
        break;  // fp16 subnormal scales
      case 4:
        for (int j = 0; j < n; ++j) xr[j] = std::round(xr[j] * 2) / 2;
        break;                                         // ties
      case 5: std::fill(xr, xr + n / 2, 0.0f); break;  // a zero half
      case 6:
        for (int j = 0; j < n; ++j) xr[j] *= 3000.0f;
        break;  // large values
      default: break;
    }
  }
  return x;
}

}  // namespace

TEST(CudaCodec, QuantizedRowsMatchRowCodecBytes) {
  int cases = 0;
  for (int n : {64, 80, 96, 128}) {
    for (int bits : {2, 3, 4, 8}) {
      for (kv::Levels lv : {kv::Levels::Uniform, kv::Levels::Gaussian}) {
        if (lv == kv::Levels::Gaussian && bits > 4) continue;
        for (int group : {0, 16, 32}) {
          for (float clip : {1.0f, 0.6f, 0.9f}) {
            kv::QuantSpec spec;
            spec.bits = bits, spec.group = group, spec.clip = clip, spec.levels = lv;
            if (group && n % group) continue;
            const kv::RowCodec codec(spec, n);
            const kc::RowSpec rs = test::row_spec(codec);
            ASSERT_EQ(static_cast<size_t>(rs.row_bytes()), codec.row_bytes());
            const int rows = 24;
            const std::vector<float> x = hard_rows(n, rows, 1000 + cases);
            std::vector<uint8_t> want(codec.row_bytes()), got(codec.row_bytes(), 0xAB);
            for (int r = 0; r < rows; ++r) {
              const float* xr = x.data() + static_cast<size_t>(r) * n;
              codec.quantize(xr, want.data());
              kc::quantize_row(rs, codec.levels(), xr, got.data());
              ASSERT_EQ(want, got) << "n=" << n << " bits=" << bits << " levels=" << kv::levels_name(lv)
                                   << " group=" << codec.group() << " clip=" << clip << " row " << r;
              std::vector<float> deq(n);
              codec.dequantize(want.data(), deq.data());
              for (int j = 0; j < n; ++j) {
                const float v = kc::dequant_value(rs, codec.levels(), got.data(), j);
                ASSERT_NEAR(v, deq[j], 1e-6f * std::max(1.0f, std::fabs(deq[j]))) << "value " << j;
              }
              // scores: q·x̂ against the engine's kernel on the same packed row
              const std::vector<float> q = randn(n, 77 + r);
              std::vector<float> qsum(codec.n_groups());
              codec.query_group_sums(q.data(), qsum.data());
              float s_engine = 0;
              codec.scores(q.data(), qsum.data(), want.data(), codec.row_bytes(), 1, &s_engine);
              const float s = kc::row_score(rs, codec.levels(), q.data(), qsum.data(), got.data());
              double mag = 0;
              for (int j = 0; j < n; ++j) mag += std::fabs(double(q[j]) * deq[j]);
              ASSERT_NEAR(s, s_engine, 1e-5 * std::max(1.0, mag)) << "score of row " << r;
            }
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 100);
}

TEST(CudaCodec, SoftmaxMergeEqualsOneSoftmax) {
  const std::vector<float> s = randn(40, 5, 4.0f), v = randn(40, 6);
  double mx = -1e30, den = 0, num = 0;
  for (float x : s) mx = std::max(mx, double(x));
  for (int i = 0; i < 40; ++i) den += std::exp(s[i] - mx), num += std::exp(s[i] - mx) * v[i];
  // states over [0, 13), [13, 13) (empty), [13, 40), merged in order
  auto state = [&](int a, int b, float& acc) {
    kc::SoftmaxState st;
    acc = 0;
    for (int i = a; i < b; ++i) st.m = std::max(st.m, s[i]);
    for (int i = a; i < b; ++i) st.l += std::exp(s[i] - st.m), acc += std::exp(s[i] - st.m) * v[i];
    return st;
  };
  float acc, a1, a2;
  kc::SoftmaxState st = state(0, 0, acc), s1 = state(0, 13, a1), s2 = state(13, 13, a2), s3 = state(13, 40, a2);
  float fa, fb;
  kc::softmax_merge(st, s1, fa, fb);
  acc = fa * acc + fb * a1;
  kc::softmax_merge(st, s2, fa, fb);
  acc = fa * acc + fb * 0.0f;
  kc::softmax_merge(st, s3, fa, fb);
  acc = fa * acc + fb * a2;
  EXPECT_NEAR(acc / st.l, num / den, 1e-6);
}

namespace {

// Serial emulation of kv_attend_decode (kv_attend.cu): the same splits, 4 warps of 32-row tiles
// per split, per-tile online softmax, warps then splits merged in order, rotation back.
std::vector<float> emulate_attend(const kc::AttendArgs& a, const float* q, float scale) {
  const int n = a.head_dim, nkv = a.n_head_kv, group = a.n_head / nkv;
  const int64_t all_rows = kc::attend_total_rows(a);
  std::vector<float> out(static_cast<size_t>(a.n_q) * a.n_head * n, 0.0f);
  for (int64_t pair = 0; pair < int64_t{a.n_q} * a.n_head; ++pair) {
    const int64_t qi = pair / a.n_head;
    const int h = static_cast<int>(pair % a.n_head);
    const int64_t total = kc::attend_query_rows(all_rows, a.n_q, qi);  // this query's rows
    const int64_t R = kc::attend_rows_per_split(total, a.rows_per_split);
    const int64_t n_split = total == 0 ? 0 : kc::attend_splits(total, a.rows_per_split);
    const int kvh = h / group;
    std::vector<float> qs(n);
    for (int j = 0; j < n; ++j) qs[j] = q[pair * n + j] * scale;
    if (a.rotate) kc::wht_row(qs.data(), n);
    std::vector<std::vector<float>> qsum(a.n_spans);
    for (int s = 0; s < a.n_spans; ++s) {
      if (!a.spans[s].packed) continue;
      const int G = a.spans[s].ks.group;
      qsum[s].assign(n / G, 0.0f);
      for (int g = 0; g < n / G; ++g) {
        for (int j = 0; j < G; ++j) qsum[s][g] += qs[g * G + j];
      }
    }
    auto value = [&](const kc::RowRef& rr, int j) {
      const kc::AttendSpan& sp = a.spans[rr.span];
      if (sp.packed)
        return kc::dequant_value(sp.vs, sp.v_levels, sp.v + kvh * sp.head_stride_v + rr.row * sp.vs.row_bytes(), j);
      return kc::half_to_float(reinterpret_cast<const uint16_t*>(sp.v)[(rr.row * nkv + kvh) * n + j]);
    };
    kc::SoftmaxState total_st;
    std::vector<float> total_acc(n, 0.0f);
    for (int64_t sp_i = 0; sp_i < n_split; ++sp_i) {
      const int64_t t0 = sp_i * R, t1 = std::min(total, t0 + R);
      kc::SoftmaxState block;
      std::vector<float> bacc(n, 0.0f);
      for (int w = 0; w < 4; ++w) {
        kc::SoftmaxState st;
        std::vector<float> acc(n, 0.0f);
        for (int64_t base = t0 + w * 32; base < t1; base += 128) {
          const int nb = static_cast<int>(std::min<int64_t>(32, t1 - base));
          float sc[32], p[32];
          kc::RowRef rr[32];
          float tmax = -INFINITY;
          for (int i = 0; i < nb; ++i) {
            rr[i] = kc::locate_row(a, base + i);
            const kc::AttendSpan& sp = a.spans[rr[i].span];
            sc[i] = sp.packed
                        ? kc::row_score(sp.ks, sp.k_levels, qs.data(), qsum[rr[i].span].data(),
                                        sp.k + kvh * sp.head_stride_k + rr[i].row * sp.ks.row_bytes())
                        : kc::half_row_score(qs.data(),
                                             reinterpret_cast<const uint16_t*>(sp.k) + (rr[i].row * nkv + kvh) * n, n);
            tmax = std::max(tmax, sc[i]);
          }
          const float mnew = std::max(st.m, tmax);
          const float f = st.m == -INFINITY ? 0.0f : std::exp(st.m - mnew);
          float psum = 0;
          for (int i = 0; i < nb; ++i) p[i] = std::exp(sc[i] - mnew), psum += p[i];
          st.l = st.l * f + psum;
          st.m = mnew;
          for (float& x : acc) x *= f;
          for (int i = 0; i < nb; ++i) {
            for (int j = 0; j < n; ++j) acc[j] += p[i] * value(rr[i], j);
          }
        }
        float fa, fb;
        kc::softmax_merge(block, st, fa, fb);
        for (int j = 0; j < n; ++j) bacc[j] = fa * bacc[j] + fb * acc[j];
      }
      float fa, fb;
      kc::softmax_merge(total_st, block, fa, fb);
      for (int j = 0; j < n; ++j) total_acc[j] = fa * total_acc[j] + fb * bacc[j];
    }
    float* o = out.data() + static_cast<size_t>(pair) * n;
    const float inv = total_st.l > 0 ? 1.0f / total_st.l : 0.0f;
    for (int j = 0; j < n; ++j) o[j] = total_acc[j] * inv;
    if (a.rotate) kc::wht_row(o, n);
  }
  return out;
}

}  // namespace

TEST(CudaCodec, EmulatedFlashDecodingMatchesCpuCache) {
  cpu::ThreadPool pool(2);
  uint32_t seed = 11;
  for (const test::DecodeCase& cs : test::decode_cases()) {
    SCOPED_TRACE(cs.mode + " hd=" + std::to_string(cs.head_dim) + " n=" + std::to_string(cs.n_tokens));
    std::unique_ptr<kv::KvCache> cache = test::decode_cache(cs, seed);
    auto* qc = dynamic_cast<kv::QuantKvCache*>(cache.get());
    ASSERT_NE(qc, nullptr);
    for (int l = 0; l < 2; ++l) {
      test::HostSpans hs = test::decode_spans(*qc, l);
      hs.args.n_head = cs.n_head;
      hs.args.rows_per_split = cs.rows_per_split;
      ASSERT_EQ(kc::attend_total_rows(hs.args), cs.n_tokens) << "every token in exactly one span";
      const std::vector<float> q = randn(static_cast<size_t>(cs.n_head) * cs.head_dim, seed++, 1.5f);
      const float scale = 1.0f / std::sqrt(static_cast<float>(cs.head_dim));
      std::vector<float> want(q.size());
      cache->attend(l, q.data(), 1, cs.n_head, scale, want.data(), pool);
      const std::vector<float> got = emulate_attend(hs.args, q.data(), scale);
      EXPECT_LE(test::max_rel_err(want, got), 2e-5)
          << "layer " << l << " splits " << kc::attend_splits(cs.n_tokens, cs.rows_per_split);
    }
  }
}

// Several queries in one launch (prefill over fp16 rows): query i sees rows [0, total − n_q + i]
// and takes exactly the splits, tiles and merges of a decode over those rows, so its output is
// the same bits as that decode's; and it matches a double-precision causal reference.
TEST(CudaCodec, MaxSplitsCoversEveryQuery) {
  // the split size grows in steps of 128 rows with the length: 32768 rows take 256 splits of 128,
  // 32769 and 32770 take 129 of 256, so the longest query does not have the most splits
  EXPECT_EQ(kc::attend_splits(32768, 0), 256);
  EXPECT_EQ(kc::attend_splits(32770, 0), 129);
  EXPECT_EQ(kc::attend_max_splits(32770, 3, 0), 256);
  EXPECT_EQ(kc::attend_max_splits(32770, 1, 0), 129);
  for (int64_t total : {1, 127, 128, 129, 5000, 32767, 32768, 32769, 70000}) {
    for (int n_q : {1, 2, 7}) {
      if (n_q > total) continue;
      int64_t m = 0;
      for (int i = 0; i < n_q; ++i) m = std::max(m, kc::attend_splits(kc::attend_query_rows(total, n_q, i), 0));
      EXPECT_EQ(kc::attend_max_splits(total, n_q, 0), m) << total << " " << n_q;
      EXPECT_LE(m, 256);  // the default split size never makes more than 256 splits
    }
  }
}

TEST(CudaCodec, EmulatedMultiQueryEqualsDecodeBitForBit) {
  const int n_head = 8, nkv = 2, hd = 64;
  for (int64_t n_rows : {300, 1000, 32770}) {  // 32770: queries on both sides of a split-size step
    const int n_q = n_rows > 5000 ? 3 : 40;
    const size_t row = static_cast<size_t>(nkv) * hd;
    const std::vector<float> kf = randn(n_rows * row, 1), vf = randn(n_rows * row, 2);
    std::vector<uint16_t> k16(kf.size()), v16(vf.size());
    for (size_t i = 0; i < kf.size(); ++i) k16[i] = f32_to_fp16(kf[i]), v16[i] = f32_to_fp16(vf[i]);
    const std::vector<float> q = randn(static_cast<size_t>(n_q) * n_head * hd, 3, 1.5f);
    kc::AttendArgs a;
    a.n_head = n_head, a.n_head_kv = nkv, a.head_dim = hd, a.n_q = n_q, a.n_spans = 1;
    a.spans[0].packed = false;
    a.spans[0].k = reinterpret_cast<const uint8_t*>(k16.data());
    a.spans[0].v = reinterpret_cast<const uint8_t*>(v16.data());
    a.spans[0].n_rows = n_rows;
    const float scale = 0.125f;
    const std::vector<float> all = emulate_attend(a, q.data(), scale);
    for (int i = 0; i < n_q; i += (n_q > 3 ? 13 : 1)) {
      kc::AttendArgs d = a;  // the same query decoded over its own rows
      d.n_q = 1;
      d.spans[0].n_rows = kc::attend_query_rows(n_rows, n_q, i);
      const std::vector<float> one = emulate_attend(d, q.data() + static_cast<size_t>(i) * n_head * hd, scale);
      for (size_t e = 0; e < one.size(); ++e) {
        ASSERT_EQ(bits_of(one[e]), bits_of(all[static_cast<size_t>(i) * n_head * hd + e])) << "query " << i;
      }
      // double-precision causal reference for this query
      std::vector<float> want(static_cast<size_t>(n_head) * hd);
      const int64_t lim = d.spans[0].n_rows;
      for (int h = 0; h < n_head; ++h) {
        const int g = h / (n_head / nkv);
        std::vector<double> sc(lim);
        double mx = -1e300, den = 0;
        for (int64_t t = 0; t < lim; ++t) {
          double dot = 0;
          for (int j = 0; j < hd; ++j) {
            dot += double(q[(static_cast<size_t>(i) * n_head + h) * hd + j]) * scale *
                   fp16_to_f32(k16[(t * nkv + g) * hd + j]);
          }
          sc[t] = dot, mx = std::max(mx, dot);
        }
        for (double& e : sc) e = std::exp(e - mx), den += e;
        for (int j = 0; j < hd; ++j) {
          double o = 0;
          for (int64_t t = 0; t < lim; ++t) o += sc[t] * fp16_to_f32(v16[(t * nkv + g) * hd + j]);
          want[h * hd + j] = static_cast<float>(o / den);
        }
      }
      EXPECT_LE(test::max_rel_err(want, one), 2e-5) << "query " << i << " of " << n_rows << " rows";
    }
  }
}

// ---- weight formats (cuda/weights.cuh) ----

TEST(CudaWeights, Dequant32MatchesEngineBitForBit) {
  for (DType t :
       {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const auto wt = static_cast<kc::WType>(static_cast<int>(t));
    ASSERT_TRUE(kc::wtype_known(static_cast<int>(t)));
    const int64_t n = 1024;
    std::mt19937 rng(3 + static_cast<uint32_t>(t));
    const std::vector<uint8_t> row = test::random_weights(t, 1, n, rng);
    ASSERT_EQ(static_cast<int64_t>(row.size()), kc::wtype_row_bytes(wt, n));
    std::vector<float> want(n), got(n);
    ops::dequantize_row(t, row.data(), want.data(), n);
    for (int64_t c = 0; c < n / 32; ++c) kc::dequant32(wt, row.data(), c, got.data() + 32 * c);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(bits_of(got[i]), bits_of(want[i])) << dtype_name(static_cast<uint32_t>(t)) << " value " << i;
    }
  }
}

// ---- per-element model ops (cuda/nn_math.cuh) ----

TEST(CudaNnMath, ActivationsAndSwigluMatchEngine) {
  const std::vector<float> x = randn(4096, 21, 3.0f), u = randn(4096, 22);
  cpu::ThreadPool pool(1);
  for (int a = 0; a < 5; ++a) {
    std::vector<float> want = x;
    ops::activation(static_cast<ops::Activation>(a), want.data(), 1, static_cast<int64_t>(want.size()), pool);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(kc::act_value(static_cast<kc::Act>(a), x[i]), want[i], 2e-6f * std::max(1.0f, std::fabs(want[i])))
          << ops::activation_name(static_cast<ops::Activation>(a)) << " x=" << x[i];
    }
  }
  std::vector<float> want(x.size());
  ops::swiglu(x.data(), u.data(), want.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(kc::swiglu_value(x[i], u[i]), want[i], 2e-6f * std::max(1.0f, std::fabs(want[i])));
  }
}

TEST(CudaNnMath, RopeMatchesEngine) {  // the rope kernel's per-pair work, run serially
  const int n_tok = 5, n_head = 3, hd = 64;
  const std::vector<int32_t> pos = {0, 1, 17, 500, 4095};
  std::vector<float> div(32);
  for (int i = 0; i < 32; ++i) div[i] = 1.0f + 0.5f * i;
  for (bool half_split : {false, true}) {
    for (int n_rot : {64, 32}) {
      for (const ops::RopeScaling sc : {ops::RopeScaling{}, ops::RopeScaling{0.25f, div.data()}}) {
        std::vector<float> x = randn(n_tok * n_head * hd, 31 + n_rot), want = x;
        ops::rope(want.data(), n_tok, n_head, hd, n_rot, pos.data(), 10000.0f,
                  half_split ? ops::RopeMode::HalfSplit : ops::RopeMode::AdjacentPairs, sc);
        for (int t = 0; t < n_tok; ++t) {
          for (int h = 0; h < n_head; ++h) {
            for (int i = 0; i < n_rot / 2; ++i) {
              float c, s;
              kc::rope_cos_sin(pos[t], i, n_rot, 10000.0f, sc.freq_scale, sc.freq_factors ? sc.freq_factors[i] : 1.0f,
                               c, s);
              int i0, i1;
              kc::rope_pair(half_split, i, n_rot, i0, i1);
              float* v = x.data() + (t * n_head + h) * hd;
              const float x0 = v[i0], x1 = v[i1];
              v[i0] = x0 * c - x1 * s;
              v[i1] = x0 * s + x1 * c;
            }
          }
        }
        for (size_t i = 0; i < x.size(); ++i)
          ASSERT_NEAR(x[i], want[i], 1e-5f) << "half_split=" << half_split << " i=" << i;
      }
    }
  }
}
