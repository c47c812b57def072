// The GPU KV caches against the CPU caches fed the same rows (skipped without a usable GPU, with
// the reason): every quantized mode through GpuQuantKvCache's device calls (observe, append,
// attend: prefill chunks on the host cache, decode by flash-decoding over the mirrored codes)
// within 1e-4 relative to max|out|, with pivots displaced and across a truncation that compacts
// the stores; the f16 GpuKvCache likewise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "cuda/kv_cache_gpu.h"
#include "cuda/kv_quant_cache_gpu.h"
#include "gpu_spans.h"
#include "kv/kv_cache.h"
#include "test_random.h"

using namespace akvq;

namespace {

using test::randn;

}  // namespace

TEST(GpuKvCaches, MatchTheCpuCacheInEveryMode) {
  AKVQ_REQUIRE_GPU();
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> modes = {
      // lut=0, pv_bf16=0: the GPU kernels score K and accumulate V rows with exact fp32 products, so
      // the CPU cache does too (as cuda_spans.h's caches)
      {"f16", {}},
      {"akvq2", {{"window", "16"}, {"pivots", "4"}, {"tsa_layers", "0"}, {"lut", "0"}, {"pv_bf16", "0"}}},
      {"akvq2", {{"lut", "0"}, {"pv_bf16", "0"}}},
      {"akvq4", {{"window", "8"}, {"pv_bf16", "0"}}},
      {"q2", {{"lut", "0"}, {"pv_bf16", "0"}}},
      {"q8", {}},
      {"wht2", {{"lut", "0"}, {"pv_bf16", "0"}}},
      {"kivi2", {}}};
  cpu::ThreadPool pool(2);
  const int n_head = 8, nkv = 2, hd = 64, E = 32;
  const size_t row = static_cast<size_t>(nkv) * hd;
  for (const auto& [mode, opts] : modes) {
    SCOPED_TRACE(mode);
    kv::KvConfig cfg;
    cfg.mode = mode, cfg.n_layer = 2, cfg.n_head_kv = nkv, cfg.head_dim = hd, cfg.n_ctx = 1024, cfg.options = opts;
    std::unique_ptr<kv::KvCache> ref = kv::KvCache::create(cfg);
    std::unique_ptr<kv::KvCache> gpu;
    if (mode == "f16") {
      gpu = std::make_unique<cuda::GpuKvCache>(cfg);
    } else {
      gpu = std::make_unique<cuda::GpuQuantKvCache>(cfg);
    }
    auto* ops = dynamic_cast<cuda::GpuCacheOps*>(gpu.get());
    ASSERT_NE(ops, nullptr);
    uint32_t seed = 3;
    const float scale = 0.125f;
    auto step = [&](int n, const char* what) {
      std::vector<TokenKind> kinds(n);
      for (int i = 0; i < n; ++i) kinds[i] = static_cast<TokenKind>((ref->n_tokens() + i) / 29 % 3);
      ref->set_kinds(kinds.data(), n);
      gpu->set_kinds(kinds.data(), n);
      for (int l = 0; l < 2; ++l) {
        std::vector<float> x = randn(static_cast<size_t>(n) * E, seed++);
        for (int i = 0; i < n; ++i) {
          const int p = ref->n_tokens(l) + i;
          if (p % 53 == 5) x[i * E + 3] = 500.0f + p;  // growing: later pivots displace earlier ones
        }
        const std::vector<float> k = randn(n * row, seed++), v = randn(n * row, seed++);
        const std::vector<float> q = randn(static_cast<size_t>(n) * n_head * hd, seed++, 1.5f);
        ref->observe(l, x.data(), n, E);
        ref->append(l, k.data(), v.data(), n);
        std::vector<float> want(q.size());
        ref->attend(l, q.data(), n, n_head, scale, want.data(), pool);
        cuda::DeviceBuffer dx = cuda::DeviceBuffer::from(x), dk = cuda::DeviceBuffer::from(k),
                           dv = cuda::DeviceBuffer::from(v), dq = cuda::DeviceBuffer::from(q), dout(q.size() * 4);
        ops->observe_device(l, dx.as<float>(), n, E);
        ops->append_device(l, dk.as<float>(), dv.as<float>(), n);
        ops->attend_device(l, dq.as<float>(), n, n_head, scale, dout.as<float>(), pool);
        ASSERT_LE(test::max_rel_err(want, dout.to_vector<float>(q.size())), 1e-4) << what << " layer " << l;
      }
      ASSERT_EQ(gpu->n_tokens(), ref->n_tokens());
    };
    for (int i = 0; i < 4; ++i) step(50, "prefill chunk");
    for (int i = 0; i < 30; ++i) step(1, "decode");
    ref->truncate(150), gpu->truncate(150);  // a real compaction (not exact for windowed modes: both alike)
    step(3, "after truncate");
    for (int i = 0; i < 5; ++i) step(1, "decode after truncate");
    if (mode != "f16" && mode != "kivi2") {  // the reservation is the mirror's, priced by bytes_bound
      EXPECT_EQ(gpu->stats().bytes_reserved, gpu->bytes_bound(cfg.n_ctx));
      EXPECT_GE(gpu->bytes_bound(cfg.n_ctx), ref->bytes_bound(cfg.n_ctx) / 2);
    }
  }
}
