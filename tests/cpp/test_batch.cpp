// BatchGenerator (akvq/batch.h) on a synthetic byte-level model: every request of a continuous
// batch (joins and leaves, chunked prefill beside decoding, cancel) gets exactly the tokens a
// Generator on a fresh Session gives it, in every KV mode; the kv_memory budget and its price per
// sequence (KvCache::bytes_bound) against the bytes a full cache really holds; the bounded queue.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "akvq/batch.h"
#include "akvq/engine.h"
#include "akvq/error.h"
#include "akvq/generate.h"
#include "test_llama_synth.h"

namespace {

using akvq::BatchEvent;
using akvq::BatchGenerator;
using akvq::BatchParams;
using akvq::FinishReason;
using akvq::GenerateParams;
using akvq::GenerateStep;

const char* kModes[] = {"f16", "q8", "q4", "q2", "kivi2", "wht2", "akvq2", "akvq4"};

// Small windows so that the quantized stores are used within a few dozen tokens.
std::map<std::string, std::string> mode_options(const std::string& mode) {
  if (mode == "akvq2" || mode == "akvq4") return {{"window", "4"}, {"pivots", "2"}};
  if (mode == "kivi2") return {{"window", "4"}};
  return {};
}

struct Out {
  std::vector<int32_t> ids;
  std::string text;
  FinishReason finish = FinishReason::None;
  std::vector<float> logprobs;
};

class BatchSynth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    akvq::testing::SynthLlama m(9, true, 8);
    path_ = ::testing::TempDir() + "akvq_batch_synth.gguf";
    const std::vector<uint8_t> bytes = m.gguf();
    std::ofstream f(path_, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  static std::shared_ptr<akvq::Model> model() { return akvq::Model::load(path_); }

  // Prompt k: 10 + 7k byte tokens (ids 4.. are bytes), varied content.
  static std::vector<int32_t> prompt(int k) {
    std::vector<int32_t> p;
    for (int i = 0; i < 10 + 7 * k; ++i) p.push_back(4 + (i * 31 + k * 17) % 250);
    return p;
  }
  // one slot of 64 tokens, one thread, up to max_queue waiting requests
  static BatchParams one_slot(int max_queue) {
    BatchParams bp;
    bp.n_parallel = 1;
    bp.n_ctx = 64;
    bp.n_threads = 1;
    bp.max_queue = max_queue;
    return bp;
  }
  static GenerateParams gen(int k) {
    GenerateParams g;
    g.max_tokens = 12 + 5 * (k % 3);
    g.sampling.temperature = k % 2 ? 0.0f : 1.3f;  // greedy and sampled requests side by side
    g.sampling.top_k = 0;
    g.sampling.top_p = 1.0f;
    g.sampling.seed = 100 + k;
    g.logprobs = k % 3 == 0 ? 3 : -1;
    return g;
  }
  // The reference: a Generator on a fresh Session.
  static Out reference(const std::shared_ptr<akvq::Model>& m, const std::string& kv, int n_ctx,
                       const std::vector<int32_t>& p, const GenerateParams& g) {
    akvq::SessionParams sp;
    sp.n_ctx = n_ctx;
    sp.n_threads = 1;
    sp.kv = kv;
    sp.kv_options = mode_options(kv);
    akvq::Session s(m, sp);
    akvq::Generator gen(s, p, g);
    Out o;
    GenerateStep st;
    while (gen.next(st)) {
      o.ids.push_back(st.id);
      o.text += st.text;
      o.logprobs.push_back(st.logprob);
    }
    o.finish = gen.finish_reason();
    return o;
  }
  static void collect(const std::vector<BatchEvent>& ev, std::map<int64_t, Out>& out, std::map<int64_t, bool>& done) {
    for (const BatchEvent& e : ev) {
      EXPECT_FALSE(done[e.id]) << "event after the end of request " << e.id;
      EXPECT_TRUE(e.error.empty()) << e.error;
      Out& o = out[e.id];
      if (e.has_step) {
        o.ids.push_back(e.step.id);
        o.text += e.step.text;
        o.logprobs.push_back(e.step.logprob);
        EXPECT_EQ(e.step.finish != FinishReason::None, e.done);
      }
      if (e.done) {
        o.finish = e.finish;
        done[e.id] = true;
      }
    }
  }
  static std::string path_;
};
std::string BatchSynth::path_;

TEST_F(BatchSynth, EveryRequestMatchesAGeneratorInEveryKvMode) {
  const auto m = model();
  const int n_ctx = 96;
  for (const char* kv : kModes) {
    SCOPED_TRACE(kv);
    BatchParams bp;
    bp.n_parallel = 3;  // 7 requests through 3 slots: joins and leaves
    bp.n_ctx = n_ctx;
    bp.n_threads = 1;
    bp.kv = kv;
    bp.kv_options = mode_options(kv);
    bp.n_batch = 9;  // prompts of 10..52 rows prefill in chunks beside the decoding rows
    BatchGenerator b(m, bp);
    ASSERT_EQ(b.n_slots(), 3);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<GenerateParams> params;
    for (int k = 0; k < 7; ++k) {
      prompts.push_back(prompt(k));
      params.push_back(gen(k));
    }
    params[6].max_tokens = 200;  // runs into the context: n_ctx - 52 prompt rows
    {                            // request 4 stops at its output's third character (the model's weights are random)
      GenerateParams free = params[4];
      free.stop.clear();
      const std::string t = reference(m, kv, n_ctx, prompts[4], free).text;
      auto char_len = [&](size_t i) {
        const unsigned char c = static_cast<unsigned char>(t[i]);
        return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;  // the text is valid UTF-8
      };
      size_t i = 0;
      for (int skip = 0; skip < 2 && i < t.size(); ++skip) i += char_len(i);
      ASSERT_LT(i, t.size()) << "a short output: " << t;
      params[4].stop = {t.substr(i, char_len(i))};
    }
    std::map<int64_t, Out> out;
    std::map<int64_t, bool> done;
    std::vector<int64_t> ids;
    for (int k = 0; k < 4; ++k) ids.push_back(b.submit(prompts[k], params[k]));
    int steps = 0;
    while (!b.idle()) {
      collect(b.step(), out, done);
      if (++steps == 5) {  // later arrivals join a running batch
        for (int k = 4; k < 7; ++k) ids.push_back(b.submit(prompts[k], params[k]));
      }
      ASSERT_LT(steps, 2000);
    }
    for (int k = 0; k < 7; ++k) {
      SCOPED_TRACE(k);
      const Out want = reference(m, kv, n_ctx, prompts[k], params[k]);
      const Out& got = out[ids[k]];
      EXPECT_TRUE(done[ids[k]]);
      EXPECT_EQ(got.ids, want.ids);
      EXPECT_EQ(got.text, want.text);
      EXPECT_EQ(got.finish, want.finish);
      ASSERT_EQ(got.logprobs.size(), want.logprobs.size());
      for (size_t i = 0; i < got.logprobs.size(); ++i) {
        if (params[k].logprobs < 0) {
          EXPECT_TRUE(std::isnan(got.logprobs[i]));
        } else {
          EXPECT_EQ(got.logprobs[i], want.logprobs[i]);
          EXPECT_LE(got.logprobs[i], 0.0f);
        }
      }
    }
    EXPECT_EQ(out[ids[6]].finish, FinishReason::Context);
    EXPECT_EQ(out[ids[4]].finish, FinishReason::Stop);
    const akvq::BatchStats st = b.stats();
    EXPECT_EQ(st.running, 0);
    EXPECT_EQ(st.queued, 0);
    EXPECT_EQ(st.requests_total, 7);
  }
}

TEST_F(BatchSynth, CancelFreesTheSlotAndLeavesTheOthersExact) {
  const auto m = model();
  BatchParams bp;
  bp.n_parallel = 2;
  bp.n_ctx = 128;
  bp.n_threads = 1;
  BatchGenerator b(m, bp);
  GenerateParams g = gen(1);
  g.max_tokens = 30;
  const int64_t a = b.submit(prompt(1), g);
  const int64_t c = b.submit(prompt(2), g);
  const int64_t q = b.submit(prompt(3), g);  // waits for a slot
  EXPECT_TRUE(b.cancel(q));                  // a queued request leaves at once
  EXPECT_FALSE(b.cancel(q));
  std::map<int64_t, Out> out;
  std::map<int64_t, bool> done;
  for (int i = 0; i < 8; ++i) collect(b.step(), out, done);
  const size_t before = out[c].ids.size();
  EXPECT_GT(before, 0u);
  EXPECT_TRUE(b.cancel(c));         // a running one: no further event
  EXPECT_EQ(b.stats().running, 1);  // the cancelled one is not counted
  while (!b.idle()) collect(b.step(), out, done);
  EXPECT_EQ(out[c].ids.size(), before);
  EXPECT_FALSE(done[c]);
  EXPECT_EQ(out.count(q), 0u);
  EXPECT_EQ(out[a].ids, reference(m, "f16", 128, prompt(1), g).ids);
  // the cancelled request's slot serves a new request exactly (its rows are reused or dropped)
  const int64_t d = b.submit(prompt(2), g);
  while (!b.idle()) collect(b.step(), out, done);
  EXPECT_EQ(out[d].ids, reference(m, "f16", 128, prompt(2), g).ids);
  EXPECT_EQ(b.stats().running, 0);
}

TEST_F(BatchSynth, FollowUpReusesTheSlotsPrefix) {
  const auto m = model();
  BatchParams bp;
  bp.n_parallel = 2;
  bp.n_ctx = 128;
  bp.n_threads = 1;
  BatchGenerator b(m, bp);
  GenerateParams g = gen(1);
  std::map<int64_t, Out> out;
  std::map<int64_t, bool> done;
  b.submit(prompt(0), g);
  const int64_t first = b.submit(prompt(3), g);
  while (!b.idle()) collect(b.step(), out, done);
  std::vector<int32_t> follow = prompt(3);  // the conversation goes on: prompt + answer + more
  follow.insert(follow.end(), out[first].ids.begin(), out[first].ids.end());
  for (int i = 0; i < 5; ++i) follow.push_back(40 + i);
  const int64_t next = b.submit(follow, g);
  int n_reused = -1;
  while (!b.idle()) {
    for (const BatchEvent& e : b.step()) {
      if (e.id == next) n_reused = e.n_reused;
    }
  }
  EXPECT_EQ(n_reused, static_cast<int>(prompt(3).size() + out[first].ids.size()) - 1);
}

TEST_F(BatchSynth, MemoryBudgetPricesEachModeAtItsBound) {
  const auto m = model();
  const int n_ctx = 160;
  std::map<std::string, int64_t> price;
  for (const char* kv : kModes) {
    SCOPED_TRACE(kv);
    BatchParams bp;
    bp.n_ctx = n_ctx;
    bp.kv = kv;
    bp.kv_options = mode_options(kv);
    bp.n_parallel = 1;
    price[kv] = BatchGenerator(m, bp).kv_bytes_per_sequence();
    // a full cache never holds more than its price (text tokens: the dearest class)
    akvq::SessionParams sp;
    sp.n_ctx = n_ctx;
    sp.n_threads = 1;
    sp.kv = kv;
    sp.kv_options = bp.kv_options;
    akvq::Session s(m, sp);
    std::vector<int32_t> ids;
    for (int i = 0; i < n_ctx; ++i) ids.push_back(4 + (i * 7) % 250);
    s.eval_prompt(ids);  // a prompt: the quantized modes with a window also take their checkpoint
    const akvq::KvSummary sum = s.kv_summary();
    const int64_t held = sum.bytes_reserved;
    EXPECT_LE(held, price[kv]);
    EXPECT_GE(held, price[kv] * 9 / 10) << "the bound should be tight for a text prompt";
    EXPECT_LE(sum.bytes, held);
    if (sum.options.count("checkpoint") && sum.options.at("checkpoint") == "1") {
      EXPECT_GT(held, sum.bytes) << "the checkpoint's copy is held and priced";
    } else {
      EXPECT_EQ(held, sum.bytes);
    }
  }
  const int64_t f16 = price["f16"];
  EXPECT_EQ(f16, int64_t{n_ctx} * 2 /*layers*/ * 2 /*kv heads*/ * 16 /*head_dim*/ * 2 /*K,V*/ * 2 /*bytes*/);
  BatchParams bp;
  bp.n_ctx = n_ctx;
  bp.n_parallel = 64;
  bp.kv_memory = 4 * f16;
  EXPECT_EQ(BatchGenerator(m, bp).n_slots(), 4);
  bp.kv = "q4";
  EXPECT_GT(BatchGenerator(m, bp).n_slots(), 8);  // 4-bit codes + scales: more than twice f16's
  bp.kv = "f16";
  bp.kv_memory = f16 - 1;
  EXPECT_THROW(BatchGenerator(m, bp), akvq::InvalidArgument);
}

TEST_F(BatchSynth, BoundedQueueAndBadRequests) {
  const auto m = model();
  const BatchParams bp = one_slot(1);
  BatchGenerator b(m, bp);
  GenerateParams g = gen(1);
  b.submit(prompt(0), g);  // takes the free slot at the next step
  b.submit(prompt(0), g);  // waits
  EXPECT_THROW(b.submit(prompt(0), g), akvq::QueueFull);
  b.step();  // the first is admitted; the second still waits
  EXPECT_THROW(b.submit(prompt(0), g), akvq::QueueFull);
  EXPECT_EQ(b.stats().queued, 1);
  EXPECT_THROW(b.submit(std::vector<int32_t>{}, g), akvq::InvalidArgument);
  EXPECT_THROW(b.submit(std::vector<int32_t>{999}, g), akvq::InvalidArgument);
  EXPECT_THROW(b.submit(std::vector<int32_t>(65, 5), g), akvq::InvalidArgument);  // > n_ctx
  g.logprobs = 21;
  EXPECT_THROW(b.submit(prompt(0), g), akvq::InvalidArgument);
  BatchParams bad = bp;
  bad.n_parallel = 0;
  EXPECT_THROW(BatchGenerator(m, bad), akvq::InvalidArgument);
  bad = bp;
  bad.kv = "q3";
  EXPECT_THROW(BatchGenerator(m, bad), akvq::InvalidArgument);
}

// A cancelled running request leaves its slot at the next step, before that step admits: the
// slot counts as free at once (a client gone makes room for the next request without a 503).
TEST_F(BatchSynth, CancelledSlotCountsAsFreeAtOnce) {
  const auto m = model();
  BatchGenerator b(m, one_slot(0));
  GenerateParams g = gen(20);
  const int64_t first = b.submit(prompt(0), g);
  b.step();
  ASSERT_EQ(b.stats().running, 1);
  EXPECT_THROW(b.submit(prompt(1), g), akvq::QueueFull);
  ASSERT_TRUE(b.cancel(first));
  const int64_t next = b.submit(prompt(1), g);
  EXPECT_THROW(b.submit(prompt(2), g), akvq::QueueFull);  // one slot: the next one now holds it
  b.step();
  const auto st = b.stats();
  EXPECT_EQ(st.running, 1);
  EXPECT_EQ(st.queued, 0);
  EXPECT_NE(next, first);
}

}  // namespace

// A prompt that extends what a slot holds keeps all of it in every mode (a follow-up turn:
// prompt + answer + more). One that diverges inside it (here: the same prompt again after its
// answer) is restored, in the quantized modes with a window, to their checkpoint (the prompt's
// last row, or the end of its last vision rows); without the checkpoint option they start over.
// Either way the tokens are a fresh Session's, through the batch and through a Session alike.
TEST_F(BatchSynth, QuantizedModesReuseThePromptUpToTheirCheckpoint) {
  const auto m = model();
  for (const char* kv : kModes) {
    for (const char* ck : {"1", "0"}) {
      const std::string mode = kv;
      const bool windowed = !mode_options(mode).empty();
      if (!windowed && std::string(ck) == "0") continue;
      SCOPED_TRACE(mode + " checkpoint=" + ck);
      auto opts = mode_options(mode);
      if (windowed) opts["checkpoint"] = ck;
      const bool on = !windowed || std::string(ck) == "1";  // f16 / no window: every prefix restores
      BatchParams bp;
      bp.n_parallel = 1;
      bp.n_ctx = 160;
      bp.n_threads = 1;
      bp.kv = mode;
      bp.kv_options = opts;
      BatchGenerator b(m, bp);
      GenerateParams g = gen(1);  // greedy
      std::map<int64_t, Out> out;
      std::map<int64_t, bool> done;
      auto run = [&](const std::vector<int32_t>& p) {
        const int64_t id = b.submit(p, g);
        int n_reused = -1;
        while (!b.idle()) {
          const auto ev = b.step();
          for (const BatchEvent& e : ev) {
            if (e.id == id) n_reused = e.n_reused;
          }
          collect(ev, out, done);
        }
        akvq::SessionParams sp;
        sp.n_ctx = bp.n_ctx;
        sp.n_threads = 1;
        sp.kv = mode;
        sp.kv_options = opts;
        akvq::Session fresh(m, sp);
        akvq::Generator gen_fresh(fresh, p, g);
        std::vector<int32_t> want;
        GenerateStep st;
        while (gen_fresh.next(st)) want.push_back(st.id);
        EXPECT_EQ(out[id].ids, want) << "prompt of " << p.size();
        return std::make_pair(n_reused, out[id].ids);
      };
      const std::vector<int32_t> p = prompt(4);  // 38 rows: past the window of 4
      const auto [r0, a0] = run(p);
      EXPECT_EQ(r0, 0);
      std::vector<int32_t> follow = p;
      follow.insert(follow.end(), a0.begin(), a0.end());
      for (int i = 0; i < 5; ++i) follow.push_back(60 + i);
      const int n_p = static_cast<int>(p.size());
      // the cache holds a prefix of the follow-up: all of it is kept, whatever the mode
      EXPECT_EQ(run(follow).first, n_p + static_cast<int>(a0.size()) - 1);
      EXPECT_EQ(run(follow).first, on ? static_cast<int>(follow.size()) - 1 : 0) << "the same prompt again";

      // a Session: the same prompt twice, logits bit for bit a fresh Session's
      akvq::SessionParams sp;
      sp.n_ctx = 160;
      sp.n_threads = 1;
      sp.kv = mode;
      sp.kv_options = opts;
      akvq::Session s(m, sp), fresh(m, sp);
      const int nv = m->info().n_vocab;
      s.eval_prompt(follow);
      s.eval(std::vector<int32_t>{70, 71, 72, 73, 74, 75, 76, 77});
      int n_reused = -1;
      const float* got = s.eval_prompt(follow, akvq::TokenKind::Text, &n_reused);
      EXPECT_EQ(n_reused, on ? static_cast<int>(follow.size()) - 1 : 0);
      const std::vector<float> lg(got, got + nv);
      const float* want = fresh.eval_prompt(follow);
      EXPECT_EQ(0, std::memcmp(lg.data(), want, nv * sizeof(float)));
    }
  }
}

// A prompt with vision rows marks its checkpoint where they end, so a next prompt about the same
// image with another question keeps the image's rows (quantized modes with a window), and its
// logits are a fresh Session's bit for bit.
TEST_F(BatchSynth, SameImageAnotherQuestionKeepsTheImageRows) {
  const auto m = model();
  const int n_embd = m->info().n_embd;
  std::vector<float> image(static_cast<size_t>(20) * n_embd);
  for (size_t i = 0; i < image.size(); ++i) image[i] = 0.05f * static_cast<float>((i * 37) % 19) - 0.4f;
  auto ask = [&](int question) {
    akvq::SessionInput in(std::vector<int32_t>{4, 5, 6, 7});
    in.add_embeddings(image.data(), 20, n_embd, akvq::TokenKind::Vision, 42);
    std::vector<int32_t> q;
    for (int i = 0; i < 12; ++i) q.push_back(4 + (i * 13 + question * 29) % 250);
    in.add_tokens(q);
    return in;
  };
  const int image_end = 4 + 20;
  for (const char* kv : {"akvq2", "kivi2", "f16"}) {
    SCOPED_TRACE(kv);
    akvq::SessionParams sp;
    sp.n_ctx = 128;
    sp.n_threads = 1;
    sp.kv = kv;
    sp.kv_options = mode_options(kv);
    akvq::Session s(m, sp), fresh(m, sp);
    const int nv = m->info().n_vocab;
    s.eval_prompt_rows(ask(1));
    s.eval(std::vector<int32_t>{70, 71, 72, 73, 74, 75});
    int n_reused = -1;
    const float* got = s.eval_prompt_rows(ask(2), &n_reused);
    EXPECT_GE(n_reused, image_end);
    if (std::string(kv) != "f16") {
      EXPECT_EQ(n_reused, image_end);
    }
    const std::vector<float> lg(got, got + nv);
    const float* want = fresh.eval_prompt_rows(ask(2));
    EXPECT_EQ(0, std::memcmp(lg.data(), want, nv * sizeof(float)));
  }
}
