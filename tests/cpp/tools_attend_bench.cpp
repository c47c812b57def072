// Benchmark of decode attention as a batched step runs it: `seqs` sequences, each with its own
// cache of `ctx` tokens in `layers` layers (prefilled in one append), then steps that append one
// token and attend one query row per sequence, side by side on 2 threads (one task per sequence
// over a one-thread pool, as Llama::forward_batch does; one sequence attends with both threads),
// layer by layer.
// With the SmolLM2 shape (3 KV heads of 64, 9 heads, 30 layers) and 8 sequences of 300 tokens the
// f16 caches hold 55 MB, more than the L3: the step reads them from memory. layers=2 keeps them in
// cache (compute only). Prints the best step time and the K/V bytes it read per second.
// usage: tools_attend_bench [mode=f16] [ctx=300] [seqs=8] [layers=30] [n_head_kv=3] [head_dim=64]
//                           [n_head=9] [reps=20]
// mode may carry kv options, "akvq2:tsa_layers=none,window=64" (as --kv-opt key=value).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "kv/kv_cache.h"

using namespace akvq;

int main(int argc, char** argv) {
  auto arg = [&](int i, int def) { return argc > i ? std::atoi(argv[i]) : def; };
  std::string mode = argc > 1 ? argv[1] : "f16";
  std::map<std::string, std::string> opts;
  if (const size_t colon = mode.find(':'); colon != std::string::npos) {
    std::string rest = mode.substr(colon + 1) + ",";
    mode.resize(colon);
    for (size_t a = 0, b; (b = rest.find(',', a)) != std::string::npos; a = b + 1) {
      const std::string kv = rest.substr(a, b - a);
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "kv option '%s' is not key=value\n", kv.c_str());
        return 2;
      }
      opts[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  const int ctx = arg(2, 300), seqs = arg(3, 8), layers = arg(4, 30), nkv = arg(5, 3), hd = arg(6, 64),
            n_head = arg(7, 9), reps = arg(8, 20);
  kv::KvConfig cfg;
  cfg.mode = mode, cfg.options = opts, cfg.n_layer = layers, cfg.n_head_kv = nkv, cfg.head_dim = hd, cfg.n_ctx = ctx + reps + 1;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<std::unique_ptr<kv::KvCache>> caches;
  std::vector<float> k(static_cast<size_t>(ctx) * nkv * hd), v(k.size()), x(static_cast<size_t>(ctx) * 64);
  for (int s = 0; s < seqs; ++s) {
    caches.push_back(kv::KvCache::create(cfg));
    for (int l = 0; l < layers; ++l) {
      for (auto& e : k) e = nd(rng);
      for (auto& e : v) e = nd(rng);
      for (auto& e : x) e = nd(rng);
      caches.back()->observe(l, x.data(), ctx, 64);
      caches.back()->append(l, k.data(), v.data(), ctx);
    }
  }
  std::vector<float> q(static_cast<size_t>(n_head) * hd), k1(static_cast<size_t>(nkv) * hd), v1(k1.size()), x1(64);
  for (auto& e : q) e = nd(rng);
  for (auto& e : k1) e = nd(rng);
  for (auto& e : v1) e = nd(rng);
  for (auto& e : x1) e = nd(rng);
  std::vector<std::vector<float>> out(seqs, std::vector<float>(q.size()));
  cpu::ThreadPool pool(2), one0(1), one1(1);
  cpu::ThreadPool* one[2] = {&one0, &one1};
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int l = 0; l < layers; ++l) {
      if (seqs == 1) {  // one sequence attends with the whole pool (Llama::forward_batch)
        caches[0]->observe(l, x1.data(), 1, 64);
        caches[0]->append(l, k1.data(), v1.data(), 1);
        caches[0]->attend(l, q.data(), 1, n_head, 0.125f, out[0].data(), pool);
        continue;
      }
      pool.run(seqs, [&](int s, int th) {
        caches[s]->observe(l, x1.data(), 1, 64);
        caches[s]->append(l, k1.data(), v1.data(), 1);
        caches[s]->attend(l, q.data(), 1, n_head, 0.125f, out[s].data(), *one[th]);
      });
    }
    best = std::min(best, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  double check = 0;
  for (const auto& o : out) for (float e : o) check += e;
  const double bytes = static_cast<double>(caches[0]->stats().bytes) * seqs;
  std::printf("%s: %d sequences x %d tokens x %d layers: %.0f us per step, %.1f MB of cache, %.1f GB/s (check %.6f)\n",
              mode.c_str(), seqs, ctx, layers, best, bytes / 1e6, bytes / best / 1e3, check);
  return 0;
}
