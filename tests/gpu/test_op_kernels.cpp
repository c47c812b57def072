// The model-op CUDA kernels against the CPU engine (skipped without a usable GPU, with the
// reason): matmul on every stored weight type and token counts 1..130 against a double-precision
// product of the engine's dequantized rows (1e-4 relative to the row's magnitude); get_rows bit
// for bit; norms, RoPE, SwiGLU, activations and attention within float rounding of the engine's
// ops or a double reference; matmul rows the same bits alone as in a batch.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "attention.cuh"
#include "core/fp16.h"
#include "cpu/thread_pool.h"
#include "cuda/check.h"
#include "gpu_spans.h"
#include "matmul.cuh"
#include "nn.cuh"
#include "ops/ops.h"
#include "test_ops_util.h"
#include "test_random.h"

using namespace akvq;
namespace kc = akvq_cuda;

namespace {

using test::randn;

void expect_close(const std::vector<float>& want, const std::vector<float>& got, double tol, const std::string& what) {
  ASSERT_EQ(want.size(), got.size());
  EXPECT_LE(test::max_rel_err(want, got), tol) << what;
}

}  // namespace

TEST(CudaOps, MatmulEveryTypeAndBatchInvariant) {
  AKVQ_REQUIRE_GPU();
  const int64_t n_in = 512, n_out = 77;
  for (DType t :
       {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    std::mt19937 rng(40 + static_cast<uint32_t>(t));
    const std::vector<uint8_t> w = test::random_weights(t, n_out, n_in, rng);
    std::vector<float> wf(n_in * n_out);
    const int64_t rb = static_cast<int64_t>(w.size()) / n_out;
    for (int64_t r = 0; r < n_out; ++r) ops::dequantize_row(t, w.data() + r * rb, wf.data() + r * n_in, n_in);
    cuda::DeviceBuffer dw = cuda::DeviceBuffer::from(w);
    for (int64_t n_tok : {1, 2, 3, 5, 8, 9, 64, 70, 130}) {
      const std::vector<float> x = randn(n_tok * n_in, 7 + n_tok);
      std::vector<float> want(n_tok * n_out);
      for (int64_t i = 0; i < n_tok; ++i) {
        for (int64_t o = 0; o < n_out; ++o) {
          double s = 0;
          for (int64_t j = 0; j < n_in; ++j) s += double(x[i * n_in + j]) * wf[o * n_in + j];
          want[i * n_out + o] = static_cast<float>(s);
        }
      }
      cuda::DeviceBuffer dx = cuda::DeviceBuffer::from(x), dy(want.size() * 4);
      kc::MatmulArgs a;
      a.type = static_cast<kc::WType>(static_cast<int>(t));
      a.w = dw.as<uint8_t>(), a.n_in = n_in, a.n_out = n_out, a.x = dx.as<float>(), a.n_tok = n_tok;
      a.y = dy.as<float>();
      AKVQ_CUDA_CHECK(kc::matmul(a, nullptr));
      AKVQ_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got = dy.to_vector<float>(want.size());
      expect_close(want, got, 1e-4,
                   std::string(dtype_name(static_cast<uint32_t>(t))) + " n_tok " + std::to_string(n_tok));
      // each row alone gives the same bits as in the batch
      cuda::DeviceBuffer dy1(n_out * 4);
      for (int64_t i : {int64_t{0}, n_tok - 1}) {
        kc::MatmulArgs a1 = a;
        a1.x = dx.as<float>() + i * n_in, a1.n_tok = 1, a1.y = dy1.as<float>();
        AKVQ_CUDA_CHECK(kc::matmul(a1, nullptr));
        const std::vector<float> row = dy1.to_vector<float>(n_out);
        EXPECT_TRUE(std::equal(row.begin(), row.end(), got.begin() + i * n_out)) << "row " << i << " of " << n_tok;
      }
    }
  }
}

TEST(CudaOps, GetRowsBitForBit) {
  AKVQ_REQUIRE_GPU();
  const int64_t ne0 = 256, n_rows = 40;
  const std::vector<int32_t> ids = {0, 39, 7, 7, 12};
  for (DType t :
       {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    std::mt19937 rng(60 + static_cast<uint32_t>(t));
    const std::vector<uint8_t> w = test::random_weights(t, n_rows, ne0, rng);
    TensorView tv;
    tv.type = t;
    tv.ne[0] = ne0, tv.ne[1] = n_rows;
    tv.n_dims = 2;
    tv.data = w.data();
    tv.nbytes = w.size();
    std::vector<float> want(ids.size() * ne0);
    ops::get_rows(tv, ids.data(), static_cast<int64_t>(ids.size()), want.data());
    cuda::DeviceBuffer dw = cuda::DeviceBuffer::from(w), di = cuda::DeviceBuffer::from(ids), dout(want.size() * 4);
    AKVQ_CUDA_CHECK(kc::get_rows(static_cast<kc::WType>(static_cast<int>(t)), dw.as<uint8_t>(), ne0, n_rows,
                                 di.as<int32_t>(), static_cast<int64_t>(ids.size()), dout.as<float>(), nullptr));
    EXPECT_EQ(dout.to_vector<float>(want.size()), want) << dtype_name(static_cast<uint32_t>(t));
    const std::vector<int32_t> bad = {3, 40, -1};  // ids out of range give zero rows
    cuda::DeviceBuffer dbad = cuda::DeviceBuffer::from(bad), dz(3 * ne0 * 4);
    AKVQ_CUDA_CHECK(kc::get_rows(static_cast<kc::WType>(static_cast<int>(t)), dw.as<uint8_t>(), ne0, n_rows,
                                 dbad.as<int32_t>(), 3, dz.as<float>(), nullptr));
    const std::vector<float> z = dz.to_vector<float>(3 * ne0);
    EXPECT_TRUE(std::all_of(z.begin() + ne0, z.end(), [](float f) { return f == 0.0f; }));
  }
}

TEST(CudaOps, NormsRopeSwigluActivationsMatchEngine) {
  AKVQ_REQUIRE_GPU();
  cpu::ThreadPool pool(2);
  const int64_t n_tok = 6, n = 576;
  const std::vector<float> x = randn(n_tok * n, 1, 2.0f), w = randn(n, 2), b = randn(n, 3);
  cuda::DeviceBuffer dx = cuda::DeviceBuffer::from(x), dw = cuda::DeviceBuffer::from(w),
                     db = cuda::DeviceBuffer::from(b);
  cuda::DeviceBuffer dy(x.size() * 4);
  {
    std::vector<float> want(x.size());
    ops::rms_norm(x.data(), w.data(), n_tok, n, 1e-5f, want.data());
    AKVQ_CUDA_CHECK(kc::rms_norm(dx.as<float>(), dw.as<float>(), n_tok, n, 1e-5f, dy.as<float>(), nullptr));
    expect_close(want, dy.to_vector<float>(x.size()), 1e-5, "rms_norm");
  }
  {
    std::vector<float> want(x.size());
    ops::layer_norm(x.data(), w.data(), b.data(), n_tok, n, 1e-5f, want.data(), pool);
    AKVQ_CUDA_CHECK(
        kc::layer_norm(dx.as<float>(), dw.as<float>(), db.as<float>(), n_tok, n, 1e-5f, dy.as<float>(), nullptr));
    expect_close(want, dy.to_vector<float>(x.size()), 1e-5, "layer_norm");
  }
  for (bool half : {false, true}) {
    for (int n_rot : {64, 32}) {      // n_rot < head_dim: the rest of each head untouched
      for (bool scaled : {false, true}) {  // scaled: linear factor 4 and per-pair divisors (Llama 3)
        const int n_head = 9, hd = 64;     // n = 576
        const std::vector<int32_t> pos = {0, 1, 2, 100, 2047, 4095};
        std::vector<float> div(n_rot / 2);
        for (int i = 0; i < n_rot / 2; ++i) div[i] = 1.0f + 0.5f * i;
        const ops::RopeScaling sc = scaled ? ops::RopeScaling{0.25f, div.data()} : ops::RopeScaling{};
        std::vector<float> want = x;
        ops::rope(want.data(), n_tok, n_head, hd, n_rot, pos.data(), 10000.0f,
                  half ? ops::RopeMode::HalfSplit : ops::RopeMode::AdjacentPairs, sc);
        cuda::DeviceBuffer dr = cuda::DeviceBuffer::from(x), dp = cuda::DeviceBuffer::from(pos),
                           dd = cuda::DeviceBuffer::from(div);
        AKVQ_CUDA_CHECK(kc::rope(dr.as<float>(), n_tok, n_head, hd, n_rot, dp.as<int32_t>(), 10000.0f, sc.freq_scale,
                                 scaled ? dd.as<float>() : nullptr, half, nullptr));
        expect_close(want, dr.to_vector<float>(x.size()), 1e-5, half ? "rope half split" : "rope adjacent");
      }
    }
  }
  {
    const std::vector<float> u = randn(x.size(), 9);
    std::vector<float> want(x.size());
    ops::swiglu(x.data(), u.data(), want.data(), static_cast<int64_t>(x.size()));
    cuda::DeviceBuffer du = cuda::DeviceBuffer::from(u);
    AKVQ_CUDA_CHECK(
        kc::swiglu(dx.as<float>(), du.as<float>(), dy.as<float>(), static_cast<int64_t>(x.size()), nullptr));
    expect_close(want, dy.to_vector<float>(x.size()), 1e-5, "swiglu");
  }
  for (int act = 0; act < 5; ++act) {
    std::vector<float> want = x;
    ops::activation(static_cast<ops::Activation>(act), want.data(), n_tok, n, pool);
    cuda::DeviceBuffer da = cuda::DeviceBuffer::from(x);
    AKVQ_CUDA_CHECK(kc::activation(static_cast<kc::Act>(act), da.as<float>(), static_cast<int64_t>(x.size()), nullptr));
    expect_close(want, da.to_vector<float>(x.size()), 1e-5, ops::activation_name(static_cast<ops::Activation>(act)));
  }
  {
    std::vector<float> want = x;
    ops::add_bias(want.data(), b.data(), n_tok, n, pool);
    cuda::DeviceBuffer da = cuda::DeviceBuffer::from(x);
    AKVQ_CUDA_CHECK(kc::add_bias(da.as<float>(), db.as<float>(), n_tok, n, nullptr));
    EXPECT_EQ(da.to_vector<float>(x.size()), want) << "add_bias";
    std::vector<float> want2 = x;
    ops::add_inplace(want2.data(), want.data(), static_cast<int64_t>(x.size()));
    cuda::DeviceBuffer dx2 = cuda::DeviceBuffer::from(x);
    AKVQ_CUDA_CHECK(kc::add(dx2.as<float>(), da.as<float>(), static_cast<int64_t>(x.size()), nullptr));
    EXPECT_EQ(dx2.to_vector<float>(x.size()), want2) << "add";
  }
}

TEST(CudaOps, AttentionCausalAndFullOverF32AndFp16) {
  AKVQ_REQUIRE_GPU();
  const int n_head = 8, nkv = 2, hd = 80;
  const int64_t n_kv = 300;
  for (bool f16 : {false, true}) {
    for (bool causal : {true, false}) {
      const int64_t n_q = causal ? 45 : n_kv;
      const std::vector<float> q = randn(n_q * n_head * hd, 1), kf = randn(n_kv * nkv * hd, 2),
                               vf = randn(kf.size(), 3);
      std::vector<uint16_t> k16(kf.size()), v16(vf.size());
      std::vector<float> kr = kf, vr = vf;  // the values the kernel sees
      for (size_t i = 0; i < kf.size(); ++i) {
        k16[i] = f32_to_fp16(kf[i]), v16[i] = f32_to_fp16(vf[i]);
        if (f16) kr[i] = fp16_to_f32(k16[i]), vr[i] = fp16_to_f32(v16[i]);
      }
      const float scale = 1.0f / std::sqrt(float(hd));
      std::vector<float> want(q.size());
      for (int64_t i = 0; i < n_q; ++i) {
        const int64_t limit = causal ? n_kv - n_q + i + 1 : n_kv;
        for (int h = 0; h < n_head; ++h) {
          const int g = h / (n_head / nkv);
          std::vector<double> s(limit);
          double mx = -1e300, den = 0;
          for (int64_t t = 0; t < limit; ++t) {
            double d = 0;
            for (int j = 0; j < hd; ++j) d += double(q[(i * n_head + h) * hd + j]) * scale * kr[(t * nkv + g) * hd + j];
            s[t] = d, mx = std::max(mx, d);
          }
          for (double& e : s) e = std::exp(e - mx), den += e;
          for (int j = 0; j < hd; ++j) {
            double o = 0;
            for (int64_t t = 0; t < limit; ++t) o += s[t] * vr[(t * nkv + g) * hd + j];
            want[(i * n_head + h) * hd + j] = static_cast<float>(o / den);
          }
        }
      }
      cuda::DeviceBuffer dq = cuda::DeviceBuffer::from(q), dout(q.size() * 4);
      cuda::DeviceBuffer dk = f16 ? cuda::DeviceBuffer::from(k16) : cuda::DeviceBuffer::from(kf);
      cuda::DeviceBuffer dv = f16 ? cuda::DeviceBuffer::from(v16) : cuda::DeviceBuffer::from(vf);
      kc::AttentionArgs a;
      a.q = dq.as<float>(), a.k = dk.ptr(), a.v = dv.ptr(), a.kv_f16 = f16, a.n_q = n_q, a.n_kv = n_kv;
      a.n_head = n_head, a.n_head_kv = nkv, a.head_dim = hd, a.scale = scale, a.causal = causal,
      a.out = dout.as<float>();
      AKVQ_CUDA_CHECK(kc::attention(a, nullptr));
      expect_close(want, dout.to_vector<float>(q.size()), 1e-4,
                   std::string(f16 ? "fp16" : "f32") + (causal ? " causal" : " full"));
    }
  }
}
