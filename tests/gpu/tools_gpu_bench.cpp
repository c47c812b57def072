// GPU decode-attention benchmark (bench/gpu.py runs it): one decode step of attention over a cache
// of `ctx` tokens, f16 cache vs akvq2 (2-bit Gaussian codes + fp16 window and pivots), timed with
// CUDA events over many launches. Prints one JSON object per line:
//   {"op": "attend", "mode", "ctx", "n_head", "n_head_kv", "head_dim", "us", "bytes", "gbps",
//    "peak_gbps", "device"}
// bytes = K and V bytes the step reads (all heads); peak_gbps from the memory clock and bus width.
// Usage: tools_gpu_bench [--ctx 4096,32768,131072] [--heads 32] [--kv-heads 32] [--head-dim 128]
//                        [--iters 50]
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "cuda/backend.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "kv/kv_options.h"
#include "kv/quant.h"
#include "kv_attend.cuh"

using namespace akvq;
namespace kc = akvq_cuda;

namespace {

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) v.push_back(std::atoll(tok.c_str()));
  return v;
}

// n rows of random fp16 values, built from a pool of distinct rows (values do not matter for speed).
std::vector<uint16_t> f16_rows(int64_t n_rows, int64_t row, std::mt19937& g) {
  std::normal_distribution<float> d;
  std::vector<uint16_t> pool(4096 * row);
  for (auto& h : pool) h = f32_to_fp16(d(g));
  std::vector<uint16_t> out(n_rows * row);
  for (int64_t r = 0; r < n_rows; ++r) std::memcpy(&out[r * row], &pool[(r % 4096) * row], row * 2);
  return out;
}

// [n_head_kv][n_rows · row_bytes] packed rows of the codec, from a pool of quantized random rows.
std::vector<uint8_t> packed_rows(const kv::RowCodec& c, int64_t n_rows, int nkv, std::mt19937& g) {
  std::normal_distribution<float> d;
  const size_t rb = c.row_bytes();
  std::vector<uint8_t> pool(1024 * rb);
  std::vector<float> x(c.n());
  for (int r = 0; r < 1024; ++r) {
    for (float& f : x) f = d(g);
    c.quantize(x.data(), &pool[r * rb]);
  }
  std::vector<uint8_t> out(static_cast<size_t>(nkv) * n_rows * rb);
  for (int64_t r = 0; r < nkv * n_rows; ++r) std::memcpy(&out[r * rb], &pool[(r % 1024) * rb], rb);
  return out;
}

double peak_gbps() {
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;  // double data rate
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> ctxs = {4096, 32768, 131072};
  int n_head = 32, nkv = 32, hd = 128, iters = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--ctx")
      ctxs = parse_list(argv[i + 1]);
    else if (a == "--heads")
      n_head = std::atoi(argv[i + 1]);
    else if (a == "--kv-heads")
      nkv = std::atoi(argv[i + 1]);
    else if (a == "--head-dim")
      hd = std::atoi(argv[i + 1]);
    else if (a == "--iters")
      iters = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "tools_gpu_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    cuda::require();
    const std::string dev = cuda::status();
    const double peak = peak_gbps();
    std::mt19937 g(1);
    // akvq2's classes as resolved for this head_dim (non-TSA layer: class 0 for every token)
    const kv::KvOptions opt = kv::resolve_kv_options("akvq2", {}, 32, hd, nullptr);
    const kv::RowCodec ck(opt.k_low, hd), cv(opt.v_low, hd);
    const int n_f16_akvq = opt.window + opt.pivots;
    std::vector<float> q(static_cast<size_t>(n_head) * hd, 0.1f);
    cuda::DeviceBuffer dq = cuda::DeviceBuffer::from(q), dout(q.size() * 4);
    const std::vector<float> kl(ck.levels(), ck.levels() + (1 << ck.spec().bits));
    const std::vector<float> vl(cv.levels(), cv.levels() + (1 << cv.spec().bits));
    cuda::DeviceBuffer dkl = cuda::DeviceBuffer::from(kl), dvl = cuda::DeviceBuffer::from(vl);
    cudaEvent_t e0, e1;
    AKVQ_CUDA_CHECK(cudaEventCreate(&e0));
    AKVQ_CUDA_CHECK(cudaEventCreate(&e1));
    for (int64_t ctx : ctxs) {
      for (const char* mode : {"f16", "akvq2"}) {
        const bool quant = std::strcmp(mode, "akvq2") == 0;
        const int64_t n_f16 = quant ? std::min<int64_t>(ctx, n_f16_akvq) : ctx;
        const int64_t n_packed = ctx - n_f16;
        const int64_t row = static_cast<int64_t>(nkv) * hd;
        std::vector<cuda::DeviceBuffer> bufs;
        kc::AttendArgs a;
        a.n_head = n_head, a.n_head_kv = nkv, a.head_dim = hd, a.scale = 0.088f, a.rotate = quant;
        int64_t bytes = 0;
        if (n_packed > 0) {
          kc::AttendSpan& sp = a.spans[a.n_spans++];
          const std::vector<uint8_t> k = packed_rows(ck, n_packed, nkv, g), v = packed_rows(cv, n_packed, nkv, g);
          bufs.push_back(cuda::DeviceBuffer::from(k));
          sp.k = bufs.back().as<uint8_t>();
          bufs.push_back(cuda::DeviceBuffer::from(v));
          sp.v = bufs.back().as<uint8_t>();
          sp.n_rows = n_packed;
          sp.ks.n = sp.vs.n = hd;
          sp.ks.group = ck.group(), sp.ks.bits = ck.spec().bits,
          sp.ks.gaussian = ck.spec().levels == kv::Levels::Gaussian;
          sp.vs.group = cv.group(), sp.vs.bits = cv.spec().bits,
          sp.vs.gaussian = cv.spec().levels == kv::Levels::Gaussian;
          sp.head_stride_k = n_packed * static_cast<int64_t>(ck.row_bytes());
          sp.head_stride_v = n_packed * static_cast<int64_t>(cv.row_bytes());
          sp.k_levels = dkl.as<float>(), sp.v_levels = dvl.as<float>();
          bytes += static_cast<int64_t>(k.size() + v.size());
        }
        if (n_f16 > 0) {
          kc::AttendSpan& sp = a.spans[a.n_spans++];
          sp.packed = false;
          const std::vector<uint16_t> k = f16_rows(n_f16, row, g), v = f16_rows(n_f16, row, g);
          bufs.push_back(cuda::DeviceBuffer::from(k));
          sp.k = bufs.back().as<uint8_t>();
          bufs.push_back(cuda::DeviceBuffer::from(v));
          sp.v = bufs.back().as<uint8_t>();
          sp.n_rows = n_f16;
          bytes += static_cast<int64_t>(2 * (k.size() + v.size()));
        }
        cuda::DeviceBuffer ws(kc::attend_workspace_floats(a) * 4);
        a.q = dq.as<float>(), a.out = dout.as<float>(), a.partial = ws.as<float>();
        for (int w = 0; w < 3; ++w) AKVQ_CUDA_CHECK(kc::kv_attend_decode(a, nullptr));
        AKVQ_CUDA_CHECK(cudaEventRecord(e0));
        for (int it = 0; it < iters; ++it) AKVQ_CUDA_CHECK(kc::kv_attend_decode(a, nullptr));
        AKVQ_CUDA_CHECK(cudaEventRecord(e1));
        AKVQ_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        AKVQ_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        const double us = 1e3 * ms / iters;
        std::printf(
            "{\"op\": \"attend\", \"mode\": \"%s\", \"ctx\": %lld, \"n_head\": %d, \"n_head_kv\": %d, \"head_dim\": "
            "%d, "
            "\"us\": %.2f, \"bytes\": %lld, \"gbps\": %.1f, \"peak_gbps\": %.1f, \"device\": \"%s\"}\n",
            mode, static_cast<long long>(ctx), n_head, nkv, hd, us, static_cast<long long>(bytes), bytes / us / 1e3,
            peak, dev.c_str());
        std::fflush(stdout);
      }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tools_gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
