// The packed-cache CUDA kernels against the CPU engine (skipped without a usable GPU, with the
// reason): fused append writes the bytes RowCodec::quantize writes for the same rotated rows
// (identical codes and headers) and the fp16 rows the window stores; flash-decoding over a real
// QuantKvCache state matches QuantKvCache::attend within 3e-5 relative to max(1, max|out|), and the fp16
// path a double-precision reference. Argument checks run without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "cpu/thread_pool.h"
#include "cuda/check.h"
#include "gpu_spans.h"
#include "kv/kv_cache.h"
#include "kv/quant.h"
#include "kv/wht.h"
#include "kv_append.cuh"
#include "kv_attend.cuh"
#include "test_random.h"

using namespace akvq;
namespace kc = akvq_cuda;

namespace {

using test::randn;

}  // namespace

TEST(CudaBackend, StatusAndAvailabilityAgree) {
  const std::string s = cuda::status();
  EXPECT_FALSE(s.empty());
  EXPECT_EQ(s.find('\n'), std::string::npos);
  if (cuda::is_available()) {
    EXPECT_GT(cuda::device_count(), 0);
    EXPECT_EQ(s.rfind("GPU 0: ", 0), 0u) << s;
  } else {
    EXPECT_THROW(cuda::require(), Unavailable);
  }
}

TEST(CudaKernels, RejectArgumentsTheyCannotServe) {  // checked before any launch: no GPU needed
  kc::AttendArgs a;
  a.n_head = 6, a.n_head_kv = 4, a.head_dim = 64;  // 6 heads over 4 KV heads
  float dummy = 0;
  a.q = a.out = a.partial = &dummy;
  EXPECT_EQ(kc::kv_attend_decode(a, nullptr), cudaErrorInvalidValue);
  a.n_head = 8, a.head_dim = 512;  // longer than kMaxHeadDim
  EXPECT_EQ(kc::kv_attend_decode(a, nullptr), cudaErrorInvalidValue);
  a.head_dim = 64, a.rows_per_split = 100;  // not a multiple of 128
  EXPECT_EQ(kc::kv_attend_decode(a, nullptr), cudaErrorInvalidValue);
  kc::AppendArgs p;
  kc::AppendJob job;
  p.jobs = &job, p.n_jobs = 1, p.n_head_kv = 1, p.head_dim = 64;
  p.cls[0].k_seg = reinterpret_cast<uint8_t*>(&dummy);
  p.cls[0].k.n = 64, p.cls[0].k.group = 12, p.cls[0].k.bits = 2;  // group not a multiple of 8
  EXPECT_EQ(kc::kv_append(p, nullptr), cudaErrorInvalidValue);
}

TEST(CudaKernels, AppendWritesTheCpuCacheBytes) {
  AKVQ_REQUIRE_GPU();
  // K and V of each class with different bits, levels, groups (several groups per row: several
  // lanes quantize) and clips, so that a mix-up of K/V specs, tables or strides shows
  auto spec = [](int bits, kv::Levels lv, int group, float clip) {
    kv::QuantSpec q;
    q.bits = bits, q.levels = lv, q.group = group, q.clip = clip;
    return q;
  };
  const kv::QuantSpec specs[2][2] = {{spec(2, kv::Levels::Gaussian, 16, 0.9f), spec(4, kv::Levels::Uniform, 32, 1.0f)},
                                     {spec(3, kv::Levels::Uniform, 0, 0.8f), spec(8, kv::Levels::Uniform, 16, 1.0f)}};
  for (bool rotate : {true, false}) {
    for (int hd : {64, 80, 128}) {
      SCOPED_TRACE("head_dim " + std::to_string(hd) + (rotate ? " rotated" : " not rotated"));
      const int nkv = 2, n_new = 37, n_old = 5;
      const size_t row = static_cast<size_t>(nkv) * hd;
      const std::vector<float> k = randn(n_new * row, 1 + hd), v = randn(n_new * row, 2 + hd);
      std::vector<uint16_t> k16(n_old * row), v16(n_old * row);  // existing fp16 rows (rotated)
      for (size_t i = 0; i < k16.size(); ++i) {
        k16[i] = f32_to_fp16(0.3f * (i % 17) - 2), v16[i] = f32_to_fp16(0.1f * (i % 29) - 1);
      }
      std::vector<kv::RowCodec> codecs;  // [class][K, V]
      for (int c = 0; c < 2; ++c) {
        for (int kv_i = 0; kv_i < 2; ++kv_i) {
          kv::QuantSpec q = specs[c][kv_i];
          if (q.group && hd % q.group) q.group = 0;
          codecs.emplace_back(q, hd);
        }
      }
      auto codec = [&](int c, int kv_i) -> const kv::RowCodec& { return codecs[c * 2 + kv_i]; };
      // jobs: tokens cycle class 0 (direct / through fp16), class 1, fp16 row; then old rows -> class 0
      std::vector<kc::AppendJob> jobs, old_jobs;
      int n_rows[2] = {0, 0}, n_f16 = 0;
      for (int t = 0; t < n_new; ++t) {
        kc::AppendJob j;
        j.src_token = t;
        j.round_f16 = t % 2;
        j.dst_class = t % 3 == 2 ? -1 : t % 3;
        j.dst_row = j.dst_class < 0 ? n_f16++ : n_rows[j.dst_class]++;
        jobs.push_back(j);
      }
      for (int r = 0; r < n_old; ++r) {
        kc::AppendJob j;
        j.src_token = -1, j.src_row = r, j.dst_class = 0, j.dst_row = n_rows[0]++;
        old_jobs.push_back(j);
      }
      std::vector<cuda::DeviceBuffer> bufs;
      auto dev = [&](const auto& vec) {
        bufs.push_back(cuda::DeviceBuffer::from(vec));
        return bufs.back().ptr();
      };
      kc::AppendArgs a;
      a.n_head_kv = nkv, a.head_dim = hd, a.rotate = rotate;
      a.k = static_cast<const float*>(dev(k));
      a.v = static_cast<const float*>(dev(v));
      a.k16_src = static_cast<const uint16_t*>(dev(k16));
      a.v16_src = static_cast<const uint16_t*>(dev(v16));
      cuda::DeviceBuffer k16_dst(n_f16 * row * 2), v16_dst(n_f16 * row * 2);
      a.k16_dst = k16_dst.as<uint16_t>(), a.v16_dst = v16_dst.as<uint16_t>();
      std::vector<cuda::DeviceBuffer> segs;  // [class][K, V]
      for (int c = 0; c < 2; ++c) {
        kc::AppendClass& ac = a.cls[c];
        ac.k = test::row_spec(codec(c, 0));
        ac.v = test::row_spec(codec(c, 1));
        const std::vector<float> kl(codec(c, 0).levels(), codec(c, 0).levels() + (1 << ac.k.bits));
        const std::vector<float> vl(codec(c, 1).levels(), codec(c, 1).levels() + (1 << ac.v.bits));
        ac.k_levels = static_cast<const float*>(dev(kl));
        ac.v_levels = static_cast<const float*>(dev(vl));
        ac.head_stride_k = static_cast<int64_t>(n_rows[c]) * codec(c, 0).row_bytes();
        ac.head_stride_v = static_cast<int64_t>(n_rows[c]) * codec(c, 1).row_bytes();
        segs.emplace_back(nkv * ac.head_stride_k);
        ac.k_seg = segs.back().as<uint8_t>();
        segs.emplace_back(nkv * ac.head_stride_v);
        ac.v_seg = segs.back().as<uint8_t>();
      }
      a.jobs = static_cast<const kc::AppendJob*>(dev(old_jobs)), a.n_jobs = n_old;
      AKVQ_CUDA_CHECK(kc::kv_append(a, nullptr));
      a.jobs = static_cast<const kc::AppendJob*>(dev(jobs)), a.n_jobs = n_new;
      AKVQ_CUDA_CHECK(kc::kv_append(a, nullptr));
      AKVQ_CUDA_CHECK(cudaDeviceSynchronize());

      // CPU: rotate, round, quantize with the engine's codecs
      std::vector<std::vector<uint8_t>> want(4);  // [class][K, V]
      for (int c = 0; c < 2; ++c) {
        for (int kv_i = 0; kv_i < 2; ++kv_i) want[c * 2 + kv_i].assign(nkv * n_rows[c] * codec(c, kv_i).row_bytes(), 0);
      }
      std::vector<uint16_t> want_k16(n_f16 * row), want_v16(n_f16 * row);
      auto place = [&](int cls, int64_t r, int h, const float* kx, const float* vx) {
        for (int kv_i = 0; kv_i < 2; ++kv_i) {
          const size_t rb = codec(cls, kv_i).row_bytes(), hs = static_cast<size_t>(n_rows[cls]) * rb;
          codec(cls, kv_i).quantize(kv_i == 0 ? kx : vx, want[cls * 2 + kv_i].data() + h * hs + r * rb);
        }
      };
      std::vector<float> kr(hd), vr(hd);
      for (const kc::AppendJob& j : old_jobs) {
        for (int h = 0; h < nkv; ++h) {
          for (int d = 0; d < hd; ++d) {
            kr[d] = fp16_to_f32(k16[j.src_row * row + h * hd + d]);
            vr[d] = fp16_to_f32(v16[j.src_row * row + h * hd + d]);
          }
          place(0, j.dst_row, h, kr.data(), vr.data());
        }
      }
      for (const kc::AppendJob& j : jobs) {
        for (int h = 0; h < nkv; ++h) {
          std::copy_n(k.data() + j.src_token * row + h * hd, hd, kr.data());
          std::copy_n(v.data() + j.src_token * row + h * hd, hd, vr.data());
          if (rotate) kv::wht(kr.data(), hd), kv::wht(vr.data(), hd);
          if (j.dst_class < 0) {
            for (int d = 0; d < hd; ++d) {
              want_k16[j.dst_row * row + h * hd + d] = f32_to_fp16(kr[d]);
              want_v16[j.dst_row * row + h * hd + d] = f32_to_fp16(vr[d]);
            }
            continue;
          }
          if (j.round_f16) {
            for (int d = 0; d < hd; ++d) {
              kr[d] = fp16_to_f32(f32_to_fp16(kr[d])), vr[d] = fp16_to_f32(f32_to_fp16(vr[d]));
            }
          }
          place(j.dst_class, j.dst_row, h, kr.data(), vr.data());
        }
      }
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(segs[i].to_vector<uint8_t>(want[i].size()), want[i]) << (i % 2 ? "V" : "K") << " class " << i / 2;
      }
      EXPECT_EQ(k16_dst.to_vector<uint16_t>(want_k16.size()), want_k16);
      EXPECT_EQ(v16_dst.to_vector<uint16_t>(want_v16.size()), want_v16);
    }
  }
}

TEST(CudaKernels, FlashDecodingMatchesCpuCache) {
  AKVQ_REQUIRE_GPU();
  cpu::ThreadPool pool(2);
  uint32_t seed = 5;
  for (const test::DecodeCase& cs : test::decode_cases()) {
    SCOPED_TRACE(cs.mode + " hd=" + std::to_string(cs.head_dim) + " n=" + std::to_string(cs.n_tokens));
    std::unique_ptr<kv::KvCache> cache = test::decode_cache(cs, seed);
    auto* qc = dynamic_cast<kv::QuantKvCache*>(cache.get());
    ASSERT_NE(qc, nullptr);
    for (int l = 0; l < 2; ++l) {
      test::HostSpans hs = test::decode_spans(*qc, l);
      hs.args.n_head = cs.n_head;
      hs.args.rows_per_split = cs.rows_per_split;
      test::DeviceSpans ds = test::upload_spans(hs);
      const std::vector<float> q = randn(static_cast<size_t>(cs.n_head) * cs.head_dim, seed++, 1.5f);
      const float scale = 1.0f / std::sqrt(static_cast<float>(cs.head_dim));
      std::vector<float> want(q.size());
      cache->attend(l, q.data(), 1, cs.n_head, scale, want.data(), pool);
      cuda::DeviceBuffer dq = cuda::DeviceBuffer::from(q), dout(q.size() * 4);
      cuda::DeviceBuffer ws(kc::attend_workspace_floats(ds.args) * 4);
      ds.args.q = dq.as<float>(), ds.args.out = dout.as<float>(), ds.args.partial = ws.as<float>();
      ds.args.scale = scale;
      AKVQ_CUDA_CHECK(kc::kv_attend_decode(ds.args, nullptr));
      AKVQ_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_LE(test::max_rel_err(want, dout.to_vector<float>(q.size())), 3e-5) << "layer " << l;
    }
  }
}

TEST(CudaKernels, FlashDecodingOverFp16RowsMatchesDoubleReference) {
  AKVQ_REQUIRE_GPU();
  const int n_head = 32, nkv = 8, hd = 128, n = 4099;
  const std::vector<float> kf = randn(static_cast<size_t>(n) * nkv * hd, 3), vf = randn(kf.size(), 4);
  const std::vector<float> q = randn(static_cast<size_t>(n_head) * hd, 5, 2.0f);
  std::vector<uint16_t> k16(kf.size()), v16(vf.size());
  for (size_t i = 0; i < kf.size(); ++i) k16[i] = f32_to_fp16(kf[i]), v16[i] = f32_to_fp16(vf[i]);
  const float scale = 1.0f / std::sqrt(float(hd));
  std::vector<float> want(q.size());
  for (int h = 0; h < n_head; ++h) {
    const int g = h / (n_head / nkv);
    std::vector<double> s(n);
    double mx = -1e300;
    for (int t = 0; t < n; ++t) {
      double d = 0;
      for (int j = 0; j < hd; ++j)
        d += double(q[h * hd + j]) * scale * fp16_to_f32(k16[(size_t(t) * nkv + g) * hd + j]);
      s[t] = d, mx = std::max(mx, d);
    }
    double den = 0;
    for (double& x : s) x = std::exp(x - mx), den += x;
    for (int j = 0; j < hd; ++j) {
      double o = 0;
      for (int t = 0; t < n; ++t) o += s[t] * fp16_to_f32(v16[(size_t(t) * nkv + g) * hd + j]);
      want[h * hd + j] = static_cast<float>(o / den);
    }
  }
  cuda::DeviceBuffer dk = cuda::DeviceBuffer::from(k16), dv = cuda::DeviceBuffer::from(v16);
  cuda::DeviceBuffer dq = cuda::DeviceBuffer::from(q), dout(q.size() * 4);
  kc::AttendArgs a;
  a.n_head = n_head, a.n_head_kv = nkv, a.head_dim = hd, a.scale = scale;
  a.n_spans = 1;
  a.spans[0].packed = false;
  a.spans[0].k = dk.as<uint8_t>(), a.spans[0].v = dv.as<uint8_t>(), a.spans[0].n_rows = n;
  cuda::DeviceBuffer ws(kc::attend_workspace_floats(a) * 4);
  a.q = dq.as<float>(), a.out = dout.as<float>(), a.partial = ws.as<float>();
  AKVQ_CUDA_CHECK(kc::kv_attend_decode(a, nullptr));
  AKVQ_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(test::max_rel_err(want, dout.to_vector<float>(q.size())), 1e-4);
}

// Several queries per launch equal single-query launches over each query's rows, bit for bit,
// including queries on both sides of a split-size step (32768 rows: 256 splits; 32770: 129).
TEST(CudaKernels, MultiQueryFlashDecodingEqualsDecodeBits) {
  AKVQ_REQUIRE_GPU();
  const int n_head = 8, nkv = 2, hd = 64, n_q = 4;
  const int64_t n = 32770;
  const std::vector<float> kf = randn(static_cast<size_t>(n) * nkv * hd, 7), vf = randn(kf.size(), 8);
  std::vector<uint16_t> k16(kf.size()), v16(vf.size());
  for (size_t i = 0; i < kf.size(); ++i) k16[i] = f32_to_fp16(kf[i]), v16[i] = f32_to_fp16(vf[i]);
  const std::vector<float> q = randn(static_cast<size_t>(n_q) * n_head * hd, 9, 1.5f);
  cuda::DeviceBuffer dk = cuda::DeviceBuffer::from(k16), dv = cuda::DeviceBuffer::from(v16);
  cuda::DeviceBuffer dq = cuda::DeviceBuffer::from(q), dout(q.size() * 4);
  kc::AttendArgs a;
  a.n_head = n_head, a.n_head_kv = nkv, a.head_dim = hd, a.scale = 0.125f, a.n_q = n_q, a.n_spans = 1;
  a.spans[0].packed = false;
  a.spans[0].k = dk.as<uint8_t>(), a.spans[0].v = dv.as<uint8_t>(), a.spans[0].n_rows = n;
  cuda::DeviceBuffer ws(kc::attend_workspace_floats(a) * 4);
  a.q = dq.as<float>(), a.out = dout.as<float>(), a.partial = ws.as<float>();
  AKVQ_CUDA_CHECK(kc::kv_attend_decode(a, nullptr));
  const std::vector<float> all = dout.to_vector<float>(q.size());
  for (int i = 0; i < n_q; ++i) {
    kc::AttendArgs d = a;
    d.n_q = 1;
    d.spans[0].n_rows = kc::attend_query_rows(n, n_q, i);
    d.q = dq.as<float>() + static_cast<int64_t>(i) * n_head * hd;
    cuda::DeviceBuffer one(static_cast<size_t>(n_head) * hd * 4), ws1(kc::attend_workspace_floats(d) * 4);
    d.out = one.as<float>(), d.partial = ws1.as<float>();
    AKVQ_CUDA_CHECK(kc::kv_attend_decode(d, nullptr));
    const std::vector<float> got = one.to_vector<float>(static_cast<size_t>(n_head) * hd);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), all.begin() + static_cast<int64_t>(i) * n_head * hd))
        << "query " << i;
  }
}
