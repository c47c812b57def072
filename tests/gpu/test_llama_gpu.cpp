// The decoder on the GPU (ModelParams::device = "cuda") against the same model on the CPU, on
// the synthetic llama model in F32, F16 and Q8_0 (skipped without a usable GPU, with the reason):
// prompt logits (every position, batched prefill) and then single-token decode steps within 1e-3
// relative to max|logit|, with the f16, akvq2 and q4 caches; mixed token / embedding rows; the GPU cache's bookkeeping
// (truncate, n_past) through the public Session API.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "akvq/batch.h"
#include "akvq/engine.h"
#include "akvq/image.h"
#include "akvq/multimodal.h"
#include "akvq/vision.h"
#include "gpu_spans.h"
#include "test_llama_synth.h"
#include "test_random.h"

using namespace akvq;
using akvq::testing::write_temp;

namespace {}  // namespace

TEST(LlamaGpu, LogitsMatchTheCpu) {
  AKVQ_REQUIRE_GPU();
  for (const char* kv : {"f16", "akvq2", "q4"}) {
    for (uint32_t wtype : {0u, 1u, 8u}) {
      SCOPED_TRACE(std::string(kv) + " weight type " + std::to_string(wtype));
      akvq::testing::SynthLlama m(5, wtype != 1, wtype);
      const std::string path = write_temp(m.gguf(), "akvq_gpu_synth_" + std::to_string(wtype) + ".gguf");
      ModelParams cpu_p, gpu_p;
      gpu_p.device = "cuda";
      auto cpu_model = Model::load(path, cpu_p);
      auto gpu_model = Model::load(path, gpu_p);
      EXPECT_EQ(gpu_model->info().device, "cuda");
      EXPECT_GT(gpu_model->info().device_bytes, 0);
      SessionParams sp;
      sp.n_ctx = 256;
      sp.n_batch = 32;  // several prefill chunks
      sp.kv = kv;
      // rows leave the window; lut=0, pv_bf16=0: the GPU kernels score K and accumulate V with exact
      // fp32 products
      if (std::string(kv) == "akvq2")
        sp.kv_options = {{"window", "16"}, {"pivots", "4"}, {"lut", "0"}, {"pv_bf16", "0"}};
      if (std::string(kv) == "q4") sp.kv_options = {{"pv_bf16", "0"}};
      Session cs(cpu_model, sp), gs(gpu_model, sp);
      std::vector<int32_t> ids(70);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % 256);
      const size_t nv = cpu_model->info().n_vocab;
      std::vector<float> want(ids.size() * nv), got(ids.size() * nv);
      cs.eval_all(ids, want.data());
      gs.eval_all(ids, got.data());
      EXPECT_LE(test::max_rel_err(want.data(), got.data(), want.size()), 1e-3) << "prefill";
      for (int step = 0; step < 20; ++step) {  // decode
        const std::vector<int32_t> one = {static_cast<int32_t>((step * 13 + 7) % 256)};
        const float* a = cs.eval(one);
        const float* b = gs.eval(one);
        ASSERT_LE(test::max_rel_err(a, b, nv), 1e-3) << "decode step " << step;
      }
      EXPECT_EQ(gs.n_past(), cs.n_past());
      gs.truncate(30), cs.truncate(30);  // bookkeeping: continue from a shorter prefix
      const float* a = cs.eval({65, 66});
      const float* b = gs.eval({65, 66});
      EXPECT_LE(test::max_rel_err(a, b, nv), 1e-3) << "after truncate";
    }
  }
}

// With the f16 cache the GPU forward is batch-invariant like the CPU's: the logits of a prompt are
// the same bits whatever the prefill chunking, and a decode step equals the same row prefilled.
TEST(LlamaGpu, F16IsBatchInvariant) {
  AKVQ_REQUIRE_GPU();
  akvq::testing::SynthLlama m(7, true, 8);
  const std::string path = write_temp(m.gguf(), "akvq_gpu_synth_inv.gguf");
  ModelParams gpu_p;
  gpu_p.device = "cuda";
  auto model = Model::load(path, gpu_p);
  std::vector<int32_t> ids(300);  // > 256 rows: queries with several splits
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 53 + 5) % 256);
  const size_t nv = model->info().n_vocab;
  std::vector<std::vector<float>> runs;
  for (int n_batch : {300, 32, 7, 1}) {
    SessionParams sp;
    sp.n_ctx = 512, sp.n_batch = n_batch;
    Session s(model, sp);
    runs.emplace_back(ids.size() * nv);
    s.eval_all(ids, runs.back().data());
  }
  for (size_t r = 1; r < runs.size(); ++r) EXPECT_EQ(runs[r], runs[0]) << "chunking " << r;
}

TEST(LlamaGpu, EmbeddingRowsMatchTheCpu) {
  AKVQ_REQUIRE_GPU();
  akvq::testing::SynthLlama m(6, true, 8);
  const std::string path = write_temp(m.gguf(), "akvq_gpu_synth_embd.gguf");
  ModelParams gpu_p;
  gpu_p.device = "cuda";
  auto cpu_model = Model::load(path), gpu_model = Model::load(path, gpu_p);
  SessionParams sp;
  sp.n_ctx = 128;
  Session cs(cpu_model, sp), gs(gpu_model, sp);
  const int E = cpu_model->info().n_embd;
  std::vector<float> rows(3 * E);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = std::sin(0.37f * static_cast<float>(i));
  SessionInput in;
  in.add_tokens({1, 2, 3});
  in.add_embeddings(rows.data(), 3, E, TokenKind::Vision, 42);
  in.add_tokens({4, 5});
  const float* a = cs.eval_rows(in);
  const std::vector<float> want(a, a + cpu_model->info().n_vocab);
  const float* b = gs.eval_rows(in);
  EXPECT_LE(test::max_rel_err(want.data(), b, want.size()), 1e-3);
}

// The demo VLM shipped in the package: its decoder on the GPU against the CPU, on a text prompt
// and on an example image (vision tower on the CPU, its rows fed to both), with every KV mode's
// cache kind (f16 and akvq2): last-token logits within 1e-3 and the same greedy continuation.
TEST(LlamaGpu, DemoVlmMatchesTheCpu) {
  AKVQ_REQUIRE_GPU();
  const std::string root = AKVQ_SOURCE_DIR;
  const std::string path = root + "/pyakvq/data/demo-vlm.gguf";
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no demo model at " << path;
  ModelParams gpu_p;
  gpu_p.device = "cuda";
  auto cpu_model = Model::load(path), gpu_model = Model::load(path, gpu_p);
  auto vision = VisionModel::from_model(cpu_model);
  const Image img = load_image(root + "/examples/red_circle.png");
  const std::vector<float> pixels = preprocess(img, preprocess_config(*vision));
  const std::vector<float> rows = vision->encode(pixels.data(), 1);
  const int E = cpu_model->info().n_embd;
  const int n_rows = static_cast<int>(rows.size() / E);
  for (const char* kv : {"f16", "akvq2"}) {
    SCOPED_TRACE(kv);
    SessionParams sp;
    sp.n_ctx = 512;
    sp.kv = kv;
    if (std::string(kv) == "akvq2") sp.kv_options = {{"lut", "0"}, {"pv_bf16", "0"}};  // the GPU's exact products
    Session cs(cpu_model, sp), gs(gpu_model, sp);
    SessionInput in;
    in.add_tokens(cpu_model->tokenize("USER: ", true, true));
    in.add_embeddings(rows.data(), n_rows, E, TokenKind::Vision, 7);
    in.add_tokens(cpu_model->tokenize("\nWhat is in the picture? ASSISTANT:", false, true));
    const size_t nv = cpu_model->info().n_vocab;
    const float* a = cs.eval_rows(in);
    std::vector<float> want(a, a + nv);
    const float* b = gs.eval_rows(in);
    ASSERT_LE(test::max_rel_err(want.data(), b, nv), 1e-3) << "prompt";
    for (int step = 0; step < 12; ++step) {  // greedy continuation, token for token
      const int32_t ta = static_cast<int32_t>(std::max_element(want.begin(), want.end()) - want.begin());
      const float* gb = gs.eval({ta});
      a = cs.eval({ta});
      want.assign(a, a + nv);
      ASSERT_LE(test::max_rel_err(want.data(), gb, nv), 1e-3) << "step " << step;
      std::vector<float> sorted = want;  // the greedy choice must agree unless the top two nearly tie
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      if (sorted[0] - sorted[1] > 1e-2f * std::max(1.0f, std::fabs(sorted[0]))) {
        ASSERT_EQ(std::max_element(want.begin(), want.end()) - want.begin(), std::max_element(gb, gb + nv) - gb)
            << "greedy token at step " << step;
      }
    }
  }
}

// Batched decoding on the GPU (several sequences per forward, prefill chunks beside decoding
// rows) against the CPU's BatchGenerator: the same greedy tokens, except after a near tie (top two
// log-probabilities within 1e-2 on the CPU), where the comparison of that request stops.
TEST(LlamaGpu, BatchGeneratorMatchesTheCpu) {
  AKVQ_REQUIRE_GPU();
  akvq::testing::SynthLlama m(8, true, 8);
  const std::string path = write_temp(m.gguf(), "akvq_gpu_synth_batch.gguf");
  ModelParams gpu_p;
  gpu_p.device = "cuda";
  auto cpu_model = Model::load(path), gpu_model = Model::load(path, gpu_p);
  for (const char* kv : {"f16", "akvq2"}) {
    SCOPED_TRACE(kv);
    BatchParams bp;
    bp.n_parallel = 3, bp.n_ctx = 256, bp.kv = kv, bp.n_batch = 40;
    if (std::string(kv) == "akvq2") bp.kv_options = {{"window", "16"}, {"lut", "0"}, {"pv_bf16", "0"}};  // exact on the GPU
    GenerateParams gp;
    gp.max_tokens = 24, gp.logprobs = 2;
    gp.sampling.temperature = 0;
    std::vector<std::vector<GenerateStep>> out[2];
    for (int dev = 0; dev < 2; ++dev) {
      BatchGenerator bg(dev ? gpu_model : cpu_model, bp);
      std::map<int64_t, int> which;
      for (int r = 0; r < 4; ++r) {  // 4 requests on 3 slots: one waits, joins later
        std::vector<int32_t> ids(20 + 15 * r);
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 31 + 7 * r) % 256);
        which[bg.submit(SessionInput(ids), gp)] = r;
      }
      out[dev].resize(4);
      while (!bg.idle()) {
        for (const BatchEvent& e : bg.step()) {
          ASSERT_TRUE(e.error.empty()) << e.error;
          if (e.has_step) out[dev][which[e.id]].push_back(e.step);
        }
      }
    }
    for (int r = 0; r < 4; ++r) {
      const auto &c = out[0][r], &g = out[1][r];
      ASSERT_FALSE(c.empty());
      for (size_t i = 0; i < std::min(c.size(), g.size()); ++i) {
        if (c[i].id == g[i].id) {
          EXPECT_NEAR(c[i].logprob, g[i].logprob, 1e-2) << "request " << r << " step " << i;
          continue;
        }
        ASSERT_GE(c[i].top_logprobs.size(), 2u);
        EXPECT_LT(c[i].top_logprobs[0].second - c[i].top_logprobs[1].second, 1e-2)
            << "request " << r << " differs at step " << i << " without a near tie";
        break;
      }
    }
  }
}
