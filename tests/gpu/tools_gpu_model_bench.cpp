// GPU model benchmark (bench/gpu.py --model-bench runs it): a random-weight Llama of the
// LLaVA-1.5-7B decoder shape (or 1.1B) written here as GGUF, loaded with device "cuda", then per
// KV mode (f16, akvq2):
//   single sequence: prefill tokens/s (512 tokens, one pass) and decode tokens/s (64 steps);
//   batch in a fixed KV memory budget: slots = budget / the mode's bytes per sequence at n_ctx,
//   every slot given a prompt of --prompt tokens and --gen generated tokens (greedy), tokens/s.
// One JSON object per line: {"op": "model", "shape", "type", "kv", "prefill_tps", "decode_tps",
// "budget_gib", "n_ctx", "slots", "batch_tps", "kv_bytes_per_seq", "device"}.
// Usage: tools_gpu_model_bench [--shape 7b|1.1b] [--type q4_0|f16] [--budget-gib 8] [--ctx 1024]
//                              [--prompt 512] [--gen 128] [--file PATH] [--device cuda|cpu]
// (--device cpu runs the same on the CPU: a check of the tool on machines without a GPU)
//        tools_gpu_model_bench --slots [--shape 7b] [--budget-gib 8] [--ctx 1024]
// prints, without a GPU, what a GPU slot costs per KV mode (cuda::GpuKvCache: n_ctx fp16 rows;
// the quantized modes: cuda::mirror_bytes_bound) and how many fit the budget:
// {"op": "slots", "kv", "n_ctx", "bytes_per_seq", "slots", "vs_f16"}
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "akvq/batch.h"
#include "akvq/engine.h"
#include "core/fp16.h"
#include "cuda/backend.h"
#include "cuda/kv_quant_cache_gpu.h"
#include "kv/kv_cache.h"
#include "test_llama_gguf_writer.h"

using namespace akvq;
using Clock = std::chrono::steady_clock;

namespace {

struct Shape {
  int n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Random bytes with finite block scales (values do not matter for speed).
struct Rand {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint64_t next() {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return s;
  }
};

void fill(std::vector<uint8_t>& b, uint32_t type, Rand& r) {
  for (size_t i = 0; i + 8 <= b.size(); i += 8) {
    const uint64_t v = r.next();
    std::memcpy(&b[i], &v, 8);
  }
  const uint16_t d = f32_to_fp16(0.002f);
  if (type == 2) {  // Q4_0: fp16 scale every 18 bytes
    for (size_t o = 0; o < b.size(); o += 18) std::memcpy(&b[o], &d, 2);
  } else if (type == 1) {  // F16: small values
    for (size_t o = 0; o < b.size(); o += 2) {
      const uint16_t h = f32_to_fp16(0.02f * (static_cast<int>(r.next() % 2001) - 1000) / 1000.0f);
      std::memcpy(&b[o], &h, 2);
    }
  }
}

// Writes the model; returns false on an I/O error.
bool write_model(const std::string& path, const Shape& sh, uint32_t type) {
  testing::GgufWriter wr;
  wr.str("general.architecture", "llama");
  wr.str("general.name", "random-bench");
  testing::write_llama_hparams(wr, "llama", 4096, sh.n_embd, sh.n_layer, sh.n_ff, sh.n_head, sh.n_head_kv, 10000.0f,
                               1e-5f);
  std::vector<std::string> toks;
  std::vector<int32_t> types;
  for (int i = 0; i < sh.n_vocab; ++i) {
    toks.push_back(i < 256 ? std::string(1, static_cast<char>(i < 33 ? 'a' + i % 26 : i)) + std::to_string(i)
                           : "t" + std::to_string(i));
    types.push_back(1);
  }
  wr.str("tokenizer.ggml.model", "gpt2");
  wr.str("tokenizer.ggml.pre", "default");
  wr.str_array("tokenizer.ggml.tokens", toks);
  wr.i32_array("tokenizer.ggml.token_type", types);
  wr.str_array("tokenizer.ggml.merges", {});
  wr.u32("tokenizer.ggml.bos_token_id", 1);
  wr.u32("tokenizer.ggml.eos_token_id", 2);
  struct T {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
  };
  std::vector<T> ts;
  const int64_t E = sh.n_embd, KV = int64_t{sh.n_head_kv} * (sh.n_embd / sh.n_head), F = sh.n_ff;
  ts.push_back({"token_embd.weight", {E, sh.n_vocab}, type});
  ts.push_back({"output_norm.weight", {E}, 0});
  ts.push_back({"output.weight", {E, sh.n_vocab}, type});
  for (int l = 0; l < sh.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    ts.push_back({p + "attn_norm.weight", {E}, 0});
    ts.push_back({p + "attn_q.weight", {E, E}, type});
    ts.push_back({p + "attn_k.weight", {E, KV}, type});
    ts.push_back({p + "attn_v.weight", {E, KV}, type});
    ts.push_back({p + "attn_output.weight", {E, E}, type});
    ts.push_back({p + "ffn_norm.weight", {E}, 0});
    ts.push_back({p + "ffn_gate.weight", {E, F}, type});
    ts.push_back({p + "ffn_up.weight", {E, F}, type});
    ts.push_back({p + "ffn_down.weight", {F, E}, type});
  }
  auto nbytes = [](const T& t) {
    const int64_t n = t.ne.size() == 1 ? t.ne[0] : t.ne[0] * t.ne[1];
    return static_cast<uint64_t>(t.type == 0 ? 4 * n : t.type == 1 ? 2 * n : n / 32 * 18);
  };
  for (const T& t : ts) wr.tensor_decl(t.name, t.ne, t.type, nbytes(t));
  std::ofstream f(path, std::ios::binary);
  const std::vector<uint8_t> head = wr.header();
  f.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
  Rand r;
  std::vector<uint8_t> buf;
  for (const T& t : ts) {
    const uint64_t n = nbytes(t);
    buf.assign((n + 31) / 32 * 32, 0);
    if (t.type == 0) {
      const float one = 1.0f;
      for (uint64_t o = 0; o + 4 <= n; o += 4) std::memcpy(&buf[o], &one, 4);
    } else {
      std::vector<uint8_t> body(n);
      fill(body, t.type, r);
      std::memcpy(buf.data(), body.data(), n);
    }
    f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
  }
  return static_cast<bool>(f);
}

}  // namespace

// The slot prices of --slots (see the header).
int print_slots(const Shape& sh, int ctx, double budget_gib) {
  const int64_t budget = static_cast<int64_t>(budget_gib * (1ull << 30));
  int64_t f16_slots = 0;
  for (const char* mode : {"f16", "akvq2", "akvq4", "q4", "q2", "kivi2"}) {
    kv::KvConfig c;
    c.mode = mode, c.n_layer = sh.n_layer, c.n_head_kv = sh.n_head_kv, c.head_dim = sh.n_embd / sh.n_head;
    c.n_ctx = ctx;
    const std::unique_ptr<kv::KvCache> host = kv::KvCache::create(c);
    const auto* q = dynamic_cast<const kv::QuantKvCache*>(host.get());
    const int64_t per_seq = q ? cuda::mirror_bytes_bound(*q, ctx) : host->bytes_bound(ctx);
    const int64_t slots = budget / per_seq;
    if (!q) f16_slots = slots;
    std::printf(
        "{\"op\": \"slots\", \"kv\": \"%s\", \"n_ctx\": %d, \"budget_gib\": %.2f, \"bytes_per_seq\": %lld, "
        "\"slots\": %lld, \"vs_f16\": %.2f}\n",
        mode, ctx, budget_gib, static_cast<long long>(per_seq), static_cast<long long>(slots),
        f16_slots ? static_cast<double>(slots) / f16_slots : 0.0);
  }
  return 0;
}

int main(int argc, char** argv) {
  std::string shape = "7b", type = "q4_0", file, device = "cuda";
  bool slots_only = false;
  if (argc > 1 && std::string(argv[1]) == "--slots") {
    slots_only = true;
    --argc, ++argv;
  }
  double budget_gib = 8;
  int ctx = 1024, prompt = 512, gen = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape")
      shape = v;
    else if (k == "--type")
      type = v;
    else if (k == "--budget-gib")
      budget_gib = std::atof(v.c_str());
    else if (k == "--ctx")
      ctx = std::atoi(v.c_str());
    else if (k == "--prompt")
      prompt = std::atoi(v.c_str());
    else if (k == "--gen")
      gen = std::atoi(v.c_str());
    else if (k == "--file")
      file = v;
    else if (k == "--device")
      device = v;
    else {
      std::fprintf(stderr, "tools_gpu_model_bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if ((shape != "7b" && shape != "1.1b") || (type != "q4_0" && type != "f16") || prompt + gen > ctx || prompt < 1) {
    std::fprintf(stderr, "tools_gpu_model_bench: bad --shape/--type, or --prompt + --gen > --ctx\n");
    return 2;
  }
  try {
    const Shape sh = shape == "7b" ? Shape{32000, 4096, 32, 32, 32, 11008} : Shape{32000, 2048, 22, 32, 4, 5632};
    if (slots_only) return print_slots(sh, ctx, budget_gib);
    if (device == "cuda") cuda::require();
    const uint32_t wt = type == "q4_0" ? 2 : 1;
    if (file.empty()) file = "/tmp/akvq_gpu_bench_" + shape + "_" + type + ".gguf";
    const auto t_w = Clock::now();
    if (!std::ifstream(file).good() && !write_model(file, sh, wt)) {
      std::fprintf(stderr, "tools_gpu_model_bench: cannot write %s\n", file.c_str());
      return 1;
    }
    std::fprintf(stderr, "model file %s (%.1f s)\n", file.c_str(), seconds_since(t_w));
    ModelParams mp;
    mp.device = device;
    std::shared_ptr<Model> model = Model::load(file, mp);
    std::vector<int32_t> ids(prompt);
    for (int i = 0; i < prompt; ++i) ids[i] = 3 + (i * 7919) % 30000;
    for (const char* kv : {"f16", "akvq2"}) {
      SessionParams sp;
      sp.n_ctx = ctx, sp.kv = kv, sp.n_batch = prompt;
      double prefill_tps = 0, decode_tps = 0;
      {
        Session s(model, sp);
        s.eval(ids);  // warm-up (allocations)
        s.reset();
        auto t0 = Clock::now();
        s.eval(ids);
        prefill_tps = prompt / seconds_since(t0);
        const int steps = std::min(64, ctx - prompt);
        t0 = Clock::now();
        for (int i = 0; i < steps; ++i) s.eval({static_cast<int32_t>(3 + i)});
        decode_tps = steps / seconds_since(t0);
      }
      BatchParams bp;
      bp.n_ctx = ctx, bp.kv = kv, bp.n_parallel = 1024, bp.n_batch = std::max(512, prompt);
      bp.kv_memory = static_cast<int64_t>(budget_gib * (1ull << 30));
      BatchGenerator bg(model, bp);
      GenerateParams gp;
      gp.max_tokens = gen;
      gp.sampling.temperature = 0;
      for (int i = 0; i < bg.n_slots(); ++i) {
        std::vector<int32_t> p = ids;
        p[0] = 3 + i;  // no shared prefix
        bg.submit(SessionInput(p), gp);
      }
      const auto t0 = Clock::now();
      int64_t generated = 0;
      while (!bg.idle()) {
        for (const BatchEvent& e : bg.step()) generated += e.has_step ? 1 : 0;
      }
      const double batch_tps = generated / seconds_since(t0);
      std::printf(
          "{\"op\": \"model\", \"shape\": \"%s\", \"type\": \"%s\", \"kv\": \"%s\", \"prefill_tps\": %.1f, "
          "\"decode_tps\": %.2f, \"budget_gib\": %.2f, \"n_ctx\": %d, \"prompt\": %d, \"gen\": %d, \"slots\": %d, "
          "\"batch_tps\": %.1f, \"kv_bytes_per_seq\": %lld, \"device\": \"%s\"}\n",
          shape.c_str(), type.c_str(), kv, prefill_tps, decode_tps, budget_gib, ctx, prompt, gen, bg.n_slots(),
          batch_tps, static_cast<long long>(bg.kv_bytes_per_sequence()),
          device == "cuda" ? cuda::status().c_str() : "cpu");
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tools_gpu_model_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
