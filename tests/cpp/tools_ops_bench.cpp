// Times ops::matmul on the shapes of SmolLM2-135M (Q4_1 layers, Q8_0 tied output) with random
// weights, for n_tok = 1 (decode) and 64 (prefill), and prints GFLOP/s and GB/s of weights read.
// Weight matrices are replicated (like the 30 layers of the model) and cycled through, so that
// they come from DRAM as in real decoding rather than from cache.
//   usage: tools_ops_bench [threads=2] [seconds per case=0.5] [MiB of weight copies=128]
//   (0 MiB: a single copy, i.e. weights hot in cache: measures the kernels' compute speed)
//   env AKVQ_BENCH_ACT=8 uses 8-bit activation levels (TensorView::act_bits).
//   env AKVQ_BENCH_PACK=0 keeps the file layout (default: weights packed for the active kernels).
//   env AKVQ_TILE=RxT overrides the tile shape of the n_tok=64 runs (experiments).
//   env AKVQ_BENCH_NTOK=N times n_tok = N instead of 64 (e.g. the rows of a batched decode step).
//   env AKVQ_BENCH_GGUF=model.gguf also times all matmuls of one decode step on the real tensors
//   of that file, once straight from the mmap and once from a heap copy.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/tensor.h"
#include "cpu/bandwidth.h"
#include "cpu/isa.h"
#include "cpu/thread_pool.h"
#include "gguf/gguf.h"
#include "ops/matmul_detail.h"
#include "ops/ops.h"
#include "ops/pack.h"

using namespace akvq;
using Clock = std::chrono::steady_clock;

namespace {

double cpu_seconds() {  // CPU time of the calling thread: robust to a busy machine (1 thread)
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Shape {
  const char* name;
  DType type;
  int64_t n_in, n_out;
  int per_step;  // calls per model step (30 layers x per-layer count, or 1 for the output)
};

// Random blocks with finite fp16 scales (payload bytes are arbitrary).
std::vector<uint8_t> random_weights(DType t, int64_t n_in, int64_t n_out, std::mt19937& rng) {
  std::vector<uint8_t> raw(row_bytes(t, n_in) * n_out);
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {  // finite normal values (random bytes
    std::normal_distribution<float> nd(0.0f, 0.02f);               // would be NaNs and denormals)
    const size_t n = static_cast<size_t>(n_in * n_out);
    for (size_t i = 0; i < n; ++i) {
      const float v = nd(rng);
      if (t == DType::F32) std::memcpy(raw.data() + 4 * i, &v, 4);
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      const uint16_t h = t == DType::F16 ? f32_to_fp16(v) : static_cast<uint16_t>(bits >> 16);  // bf16: truncated
      if (t != DType::F32) std::memcpy(raw.data() + 2 * i, &h, 2);
    }
    return raw;
  }
  for (auto& b : raw) b = static_cast<uint8_t>(rng());
  const DTypeInfo& info = dtype_info(t);
  for (size_t off = 0; off + info.block_bytes <= raw.size(); off += info.block_bytes) {
    const uint16_t d = f32_to_fp16(0.01f);
    raw[off] = d & 0xff, raw[off + 1] = d >> 8;
    if (t == DType::Q4_1) raw[off + 2] = d & 0xff, raw[off + 3] = d >> 8;
  }
  return raw;
}

// Seconds per decode step: every 2-D weight of the file (layers + output) times one token.
double model_step_seconds(const std::vector<TensorView>& ws, cpu::ThreadPool& pool, double seconds) {
  std::vector<float> x(1 << 16, 0.5f), y(1 << 17);
  int steps = 0;
  const auto t0 = Clock::now();
  double sec = 0;
  do {
    for (const TensorView& w : ws) ops::matmul(w, x.data(), 1, y.data(), pool);
    ++steps;
    sec = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (sec < seconds);
  return sec / steps;
}

void bench_model(const char* path, cpu::ThreadPool& pool, double seconds) {
  auto f = gguf::File::open(path);
  std::vector<TensorView> ws;
  size_t bytes = 0;
  for (const TensorView& t : f->tensors()) {
    if (t.n_dims != 2 || t.name == "token_embd.weight") continue;
    ws.push_back(t);
    bytes += t.nbytes;
  }
  if (!f->find_tensor("output.weight") && f->find_tensor("token_embd.weight")) {  // tied output
    ws.push_back(f->tensor("token_embd.weight"));
    bytes += ws.back().nbytes;
  }
  std::vector<std::vector<uint8_t>> copies;
  std::vector<TensorView> heap = ws;
  for (TensorView& t : heap) {
    copies.emplace_back(static_cast<const uint8_t*>(t.data), static_cast<const uint8_t*>(t.data) + t.nbytes);
    t.data = copies.back().data();
  }
  model_step_seconds(ws, pool, 0.2);  // page in
  const double s_map = model_step_seconds(ws, pool, seconds);
  const double s_heap = model_step_seconds(heap, pool, seconds);
  std::printf("\n%s: %zu matmuls, %.1f MB of weights per decode step\n", path, ws.size(), bytes / 1e6);
  std::printf("  mmap'ed weights: %.0f us/step -> %.0f tokens/s, %.1f GB/s\n", s_map * 1e6, 1 / s_map, bytes / s_map / 1e9);
  std::printf("  heap copy:       %.0f us/step -> %.0f tokens/s, %.1f GB/s\n", s_heap * 1e6, 1 / s_heap, bytes / s_heap / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.5;
  const size_t copy_bytes = (argc > 3 ? std::atoi(argv[3]) : 128) * size_t(1) << 20;
  cpu::ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::printf("threads=%d  read bandwidth (cpu/bandwidth.h probe, 1 GiB): %.1f GB/s; kernels %s\n", threads,
              cpu::read_bandwidth_gbs(pool), cpu::isa_name(cpu::active_isa()));
  // env AKVQ_BENCH_SHAPES=1.1b|7b: the matrices of a 1.1B Llama (22 layers, 2048 wide, GQA 32/4,
  // FFN 5632) or of Llama-2-7B, all of type AKVQ_BENCH_TYPE (q4_0 default, q4_1, q8_0);
  // AKVQ_BENCH_SHAPES=clip: the f16 matrices of CLIP ViT-L/14-336 (24 blocks), prefill 577 tokens.
  std::vector<Shape> shapes = {
      {"attn_q/out 576->576", DType::Q4_1, 576, 576, 60},
      {"attn_k/v 576->192", DType::Q4_1, 576, 192, 60},
      {"ffn_gate/up 576->1536", DType::Q4_1, 576, 1536, 60},
      {"ffn_down 1536->576", DType::Q4_1, 1536, 576, 30},
      {"output 576->49152", DType::Q8_0, 576, 49152, 1},
  };
  const char* model_name = "SmolLM2-135M";
  const bool pack = !std::getenv("AKVQ_BENCH_PACK") || std::string(std::getenv("AKVQ_BENCH_PACK")) != "0";
  int n_toks[2] = {1, 64};  // decode, prefill
  if (const char* e = std::getenv("AKVQ_BENCH_NTOK")) n_toks[1] = std::max(1, std::atoi(e));  // e.g. a decode batch
  bool batch_only = false;  // the CLIP shapes are packed as the vision tower's weights are
  if (const char* e = std::getenv("AKVQ_BENCH_SHAPES")) {
    DType t = DType::Q4_0;
    if (const char* te = std::getenv("AKVQ_BENCH_TYPE")) {
      if (std::string(te) == "q4_1") t = DType::Q4_1;
      if (std::string(te) == "q8_0") t = DType::Q8_0;
      if (std::string(te) == "q4_k") t = DType::Q4_K;
      if (std::string(te) == "q6_k") t = DType::Q6_K;
      if (std::string(te) == "f16") t = DType::F16;
      if (std::string(te) == "f32") t = DType::F32;
      if (std::string(te) == "bf16") t = DType::BF16;
    }
    if (std::string(e) == "1.1b") {
      model_name = "1.1B";
      shapes = {{"attn_q/out 2048->2048", t, 2048, 2048, 44},
                {"attn_k/v 2048->256", t, 2048, 256, 44},
                {"ffn_gate/up 2048->5632", t, 2048, 5632, 44},
                {"ffn_down 5632->2048", t, 5632, 2048, 22},
                {"output 2048->32000", t, 2048, 32000, 1}};
    } else if (std::string(e) == "clip") {  // CLIP ViT-L/14-336 (LLaVA-1.5): f16, 577 tokens
      model_name = "CLIP-L/336";
      const DType ft = t == DType::Q4_0 ? DType::F16 : t;  // f16 unless AKVQ_BENCH_TYPE says
      shapes = {{"attn_qkv 1024->1024", ft, 1024, 1024, 72},
                {"attn_out 1024->1024", ft, 1024, 1024, 24},
                {"mlp_fc1 1024->4096", ft, 1024, 4096, 24},
                {"mlp_fc2 4096->1024", ft, 4096, 1024, 24}};
      n_toks[1] = 577;
      batch_only = true;
    } else if (std::string(e) == "7b") {
      model_name = "7B";
      shapes = {{"attn_qkvo 4096->4096", t, 4096, 4096, 128},
                {"ffn_gate/up 4096->11008", t, 4096, 11008, 64},
                {"ffn_down 11008->4096", t, 11008, 4096, 32},
                {"output 4096->32000", t, 4096, 32000, 1}};
    }
  }
  std::printf("%-24s %-5s %5s %10s %10s %9s %12s\n", "shape", "type", "n_tok", "us/call", "GFLOP/s",
              "GB/s(W)", "cpu-us/call");
  double per_token_us[2] = {0, 0};  // summed over one model step: 30 layers + output
  for (const Shape& s : shapes) {
    const size_t bytes = row_bytes(s.type, s.n_in) * s.n_out;
    const int copies = static_cast<int>(std::max<size_t>(1, copy_bytes / bytes));
    std::vector<std::vector<uint8_t>> raws;
    std::vector<TensorView> ws;
    ops::PackedWeights packed;
    for (int c = 0; c < copies; ++c) raws.push_back(random_weights(s.type, s.n_in, s.n_out, rng));
    for (int c = 0; c < copies; ++c) {
      TensorView w;
      w.name = s.name;
      w.type = s.type;
      w.n_dims = 2;
      w.ne[0] = s.n_in;
      w.ne[1] = s.n_out;
      w.data = raws[c].data();
      w.nbytes = bytes;
      if (const char* e = std::getenv("AKVQ_BENCH_ACT"); e && std::string(e) == "8") w.act_bits = 8;
      if (pack) packed.pack(w, batch_only);  // as models do at load (ops/pack.h)
      ws.push_back(w);
    }
    for (int k = 0; k < 2; ++k) {
      const int64_t n_tok = n_toks[k];
      std::vector<float> x(n_tok * s.n_in), y(n_tok * s.n_out);
      std::normal_distribution<float> nd;
      for (auto& v : x) v = nd(rng);
      ops::detail::MatmulOptions opt;
      if (const char* e = std::getenv("AKVQ_TILE"); e && n_tok > 1) std::sscanf(e, "%dx%d", &opt.tile_r, &opt.tile_t);
      ops::detail::matmul(ws[0], x.data(), n_tok, y.data(), pool, opt);  // warm-up
      int64_t calls = 0;
      const auto t0 = Clock::now();
      const double c0 = cpu_seconds();
      double sec = 0;
      do {
        for (int i = 0; i < 8; ++i, ++calls) ops::detail::matmul(ws[calls % copies], x.data(), n_tok, y.data(), pool, opt);
        sec = std::chrono::duration<double>(Clock::now() - t0).count();
      } while (sec < seconds);
      const double us = sec / calls * 1e6;
      const double cpu_us = (cpu_seconds() - c0) / calls * 1e6;  // caller thread only
      const double flops = 2.0 * s.n_in * s.n_out * n_tok;
      std::printf("%-24s %-5s %5lld %10.1f %10.1f %9.1f %12.1f\n", s.name, dtype_info(s.type).name,
                  static_cast<long long>(n_tok), us, flops / us * 1e-3, bytes / us * 1e-3, cpu_us);
      per_token_us[k] += s.per_step * us / n_tok;
    }
  }
  std::printf("\nmatmuls of one %s step (every layer matrix + output):\n", model_name);
  std::printf("  decode  (n_tok=1):  %.0f us/token -> %.0f tokens/s (matmul only)\n", per_token_us[0],
              1e6 / per_token_us[0]);
  std::printf("  prefill (n_tok=%d): %.0f us/token -> %.0f tokens/s (matmul only)\n", n_toks[1], per_token_us[1],
              1e6 / per_token_us[1]);
  if (const char* path = std::getenv("AKVQ_BENCH_GGUF")) bench_model(path, pool, 4 * seconds);
  return 0;
}
