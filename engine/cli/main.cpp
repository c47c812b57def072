// akvq-cli: run a GGUF model from the command line. Argument parsing and printing only; the
// work is done through the public engine API.
#include <akvq/engine.h>
#include <akvq/error.h>
#include <akvq/sampler.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw akvq::IoError("cannot read prompt file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Prints generated text, holding back any tail that could start a stop string.
class StopWriter {
 public:
  explicit StopWriter(const std::vector<std::string>& stop) : stop_(stop) {}
  // Returns true when a stop string was found (its text and what follows are not printed).
  bool add(const std::string& piece) {
    text_ += piece;
    size_t cut = std::string::npos;
    for (const auto& s : stop_) {
      if (s.empty()) continue;
      const size_t from = printed_ >= s.size() ? printed_ - s.size() + 1 : 0;
      const size_t i = text_.find(s, from);
      if (i != std::string::npos && i < cut) cut = i;
    }
    if (cut != std::string::npos) {
      write(cut);
      return true;
    }
    size_t hold = 0;
    for (const auto& s : stop_) {
      for (size_t k = std::min(s.size() - (s.empty() ? 0 : 1), text_.size() - printed_); k > 0; --k) {
        if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
          hold = std::max(hold, k);
          break;
        }
      }
    }
    write(text_.size() - hold);
    return false;
  }
  void flush() { write(text_.size()); }

 private:
  void write(size_t end) {
    if (end > printed_) {
      std::fwrite(text_.data() + printed_, 1, end - printed_, stdout);
      std::fflush(stdout);
      printed_ = end;
    }
  }
  std::vector<std::string> stop_;
  std::string text_;
  size_t printed_ = 0;
};

// The KV cache's accounting: totals, then per layer the tokens/bytes of each precision class.
void print_kv_stats(const akvq::KvSummary& k) {
  std::fprintf(stderr, "kv cache:   mode %s, %lld tokens, %.2f MiB, %.3f bits/element\n", k.mode.c_str(),
               static_cast<long long>(k.n_tokens), k.bytes / 1048576.0, k.bits_per_element);
  std::string opts;
  for (const auto& [key, v] : k.options) opts += (opts.empty() ? "" : " ") + key + "=" + v;
  if (!opts.empty()) std::fprintf(stderr, "kv options: %s\n", opts.c_str());
  for (size_t il = 0; il < k.layers.size(); ++il) {
    std::string line;
    for (const auto& c : k.layers[il].classes) {
      line += "  " + c.name + " " + std::to_string(c.tokens) + " tok/" + std::to_string(c.bytes) + " B";
    }
    std::fprintf(stderr, "  layer %2zu:%s  pivots %zu\n", il, line.c_str(), k.layers[il].pivots.size());
  }
}

int run(const akvq::cli::Options& o) {
  const auto t_load = Clock::now();
  std::shared_ptr<akvq::Model> model = akvq::Model::load(o.model);
  akvq::SessionParams sp;
  sp.n_ctx = o.n_ctx;
  sp.n_threads = o.n_threads;
  sp.n_batch = o.n_batch;
  sp.kv = o.kv;
  sp.kv_options = o.kv_options;
  akvq::Session session(model, sp);
  const double load_ms = ms_since(t_load);

  const std::string prompt = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file);
  std::vector<int32_t> ids = model->tokenize(prompt, true, !o.no_special);
  if (ids.empty()) throw akvq::InvalidArgument("the prompt is empty after tokenization");
  if (static_cast<int>(ids.size()) > o.n_ctx)
    throw akvq::InvalidArgument("prompt has " + std::to_string(ids.size()) + " tokens, more than the context size " +
                                std::to_string(o.n_ctx) + " (-c)");

  akvq::Sampler sampler(o.sampling);
  StopWriter out(o.stop);
  const auto t_prompt = Clock::now();
  const float* logits = session.eval(ids);
  const double prompt_ms = ms_since(t_prompt);

  std::vector<int32_t> history = ids;
  const int n_vocab = model->info().n_vocab;
  int n_gen = 0;
  const auto t_gen = Clock::now();
  for (int i = 0; i < o.n_predict; ++i) {
    const int32_t tok = sampler.sample(logits, n_vocab, history);
    if (model->is_eog(tok)) break;
    history.push_back(tok);
    ++n_gen;
    if (out.add(model->token_piece(tok))) break;
    if (session.n_past() >= o.n_ctx) break;
    logits = session.eval({tok}, akvq::TokenKind::Generated);
  }
  out.flush();
  const double gen_ms = ms_since(t_gen);
  std::fputc('\n', stdout);
  std::fflush(stdout);

  std::fprintf(stderr, "\nload:       %8.1f ms\n", load_ms);
  std::fprintf(stderr, "prompt:     %8.1f ms / %5zu tokens (%8.2f tokens/s)\n", prompt_ms, ids.size(),
               ids.size() * 1000.0 / std::max(prompt_ms, 1e-9));
  std::fprintf(stderr, "generation: %8.1f ms / %5d tokens (%8.2f tokens/s)\n", gen_ms, n_gen,
               n_gen * 1000.0 / std::max(gen_ms, 1e-9));
  if (o.kv_stats) print_kv_stats(session.kv_summary());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  akvq::cli::Options o;
  try {
    o = akvq::cli::parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "akvq-cli: error: %s\n", e.what());
    return 2;
  }
  if (const int rc = akvq::cli::print_info(o); rc >= 0) return rc;  // --help, --version, no arguments
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "akvq-cli: error: %s\n", e.what());
    return 1;
  }
}
