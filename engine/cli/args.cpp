#include "args.h"

#include <akvq/error.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#ifndef AKVQ_VERSION
#define AKVQ_VERSION "unknown"  // set by CMake from the project version
#endif

namespace akvq::cli {

namespace {

long long to_int(const std::string& flag, const std::string& v, long long lo, long long hi) {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') throw InvalidArgument(flag + ": expected an integer, got '" + v + "'");
  if (errno == ERANGE || x < lo || x > hi)
    throw InvalidArgument(flag + ": " + v + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                          "]");
  return x;
}

uint64_t random_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) | rd();
}

// -1 (a random seed, drawn here) or an unsigned 64-bit integer.
uint64_t to_seed(const std::string& flag, const std::string& v, bool* random) {
  *random = v == "-1";
  if (*random) return random_seed();
  const std::string range = " is out of range [-1, 18446744073709551615]";
  if (!v.empty() && v[0] == '-') {  // a negative number other than -1 (or not a number at all)
    to_int(flag, v, INT64_MIN, INT64_MAX);
    throw InvalidArgument(flag + ": " + v + range);
  }
  errno = 0;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '+' || *end != '\0') throw InvalidArgument(flag + ": expected an integer, got '" + v + "'");
  if (errno == ERANGE) throw InvalidArgument(flag + ": " + v + range);
  return x;
}

float to_float(const std::string& flag, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const float x = std::strtof(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x))
    throw InvalidArgument(flag + ": expected a number, got '" + v + "'");
  return x;
}

}  // namespace

const char* usage() {
  return "usage: akvq-cli [-m MODEL] (-p PROMPT | -f FILE) [--image IMG ...] [options]\n"
         "\n"
         "Runs a GGUF language (or vision-language) model on the CPU (or --device cuda) and streams\n"
         "the completion to stdout; timings go to stderr. Ctrl-C stops the generation: the text so\n"
         "far, the timings, and exit status 130.\n"
         "\n"
         "  -m, --model FILE        GGUF model file (default: the demo VLM of the pyakvq package\n"
         "                          installed with this binary, or $AKVQ_DEMO_MODEL)\n"
         "  -p, --prompt TEXT       prompt text\n"
         "  -f, --file FILE         read the prompt from FILE\n"
         "      --image FILE        PNG or JPEG image (repeatable, in order); a prompt without the\n"
         "                          model's image marker (e.g. <image>) becomes one chat turn with\n"
         "                          the images first; otherwise each marker takes one image\n"
         "      --mmproj FILE       vision tower of llama.cpp's two-file layout (mmproj GGUF)\n"
         "      --chat-template T   chat format of the prompt: vicuna (LLaVA-1.5), chatml, none\n"
         "                          (raw), or a FILE whose text has {images} (the image markers,\n"
         "                          one per line) and {prompt} placeholders (default with images:\n"
         "                          the model's template as akvq-convert stored it, else vicuna)\n"
         "  -n, --n-predict N       tokens to generate, -1 = until the context is full (default 128)\n"
         "  -c, --ctx-size N        context size in tokens, 1..1048576 (default 4096)\n"
         "  -t, --threads N         threads, 1..512 (default: cores available)\n"
         "  -b, --batch-size N      prompt tokens per forward pass, 1..65536 (default 256)\n"
         "      --act-bits N        activation precision of the quantized matmuls: 16 (default) or 8\n"
         "                          (8: faster prompts with Q4_0, Q4_1 and Q4_K weights on AVX2 and\n"
         "                          AVX-512 CPUs, slightly different logits)\n"
         "      --device D          where the decoder runs: cpu (default), cuda (GPU 0) or auto\n"
         "      --temp T            temperature, 0 = greedy (default 0.8)\n"
         "      --top-k K           top-k, 0 or -1 = off (default 40)\n"
         "      --top-p P           top-p, 1 = off, 0 = the most likely token only (default 0.95)\n"
         "      --min-p P           min-p, 0 = off (default 0)\n"
         "      --repeat-penalty R  repetition penalty, 1 = off (default 1)\n"
         "      --repeat-last-n N   tokens the penalty looks back, -1 = all (default 64)\n"
         "  -s, --seed N            sampling seed, -1 = random (default -1)\n"
         "      --kv MODE           KV cache mode: f16 q8 q4 q2 kivi2 wht2 akvq2 akvq4 (default f16)\n"
         "      --kv-opt KEY=VALUE  KV cache option (repeatable): bits group window pivots clip\n"
         "                          clip_k clip_v k_bits v_bits levels tsa_layers tsa_bits pivot_factor\n"
         "                          rotate checkpoint lut pv_bf16\n"
         "      --kv-stats          print the KV cache's accounting to stderr at the end\n"
         "      --stop TEXT         stop when TEXT is generated (repeatable)\n"
         "      --no-special        treat special-token text in the prompt as plain text (not with --image)\n"
         "  -h, --help              show this help\n"
         "      --version           show the version\n";
}

const char* version() {
  return "akvq-cli " AKVQ_VERSION;
}

int print_info(const Options& o) {
  if (o.no_args) {
    std::fputs(usage(), stderr);
    return 2;
  }
  if (o.help) {
    std::fputs(usage(), stdout);
    return 0;
  }
  if (o.version) {
    std::printf("%s\n", version());
    return 0;
  }
  return -1;
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool has_prompt = false;
  o.sampling.seed = random_seed();  // -s N replaces it
  if (argc < 2) {
    o.no_args = true;
    return o;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw InvalidArgument(a + ": missing value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      o.help = true;
    } else if (a == "--version") {
      o.version = true;
    } else if (a == "-m" || a == "--model") {
      o.model = value();
    } else if (a == "-p" || a == "--prompt") {
      if (has_prompt) throw InvalidArgument(a + ": a second prompt (one run takes one -p PROMPT or -f FILE)");
      o.prompt = value();
      has_prompt = true;  // -p "" is given (and refused later with its own message)
    } else if (a == "-f" || a == "--file") {
      if (!o.prompt_file.empty()) throw InvalidArgument(a + ": a second prompt file (one run takes one -p PROMPT or -f FILE)");
      o.prompt_file = value();
      if (o.prompt_file.empty()) throw InvalidArgument(a + ": empty file name (use - for standard input)");
    } else if (a == "-n" || a == "--n-predict") {
      const long long n = to_int(a, value(), -1, INT32_MAX);
      o.n_predict = n < 0 ? INT32_MAX : static_cast<int>(n);  // -1: the context size ends it
    } else if (a == "-c" || a == "--ctx-size") {
      o.n_ctx = static_cast<int>(to_int(a, value(), 1, kMaxCtx));
    } else if (a == "-t" || a == "--threads") {
      o.n_threads = static_cast<int>(to_int(a, value(), 1, kMaxThreads));
    } else if (a == "-b" || a == "--batch-size") {
      o.n_batch = static_cast<int>(to_int(a, value(), 1, kMaxBatch));
    } else if (a == "--act-bits") {
      o.act_bits = static_cast<int>(to_int(a, value(), 8, 16));
      if (o.act_bits != 8 && o.act_bits != 16) throw InvalidArgument("--act-bits: expected 8 or 16");
    } else if (a == "--device") {
      o.device = value();
      if (o.device != "cpu" && o.device != "cuda" && o.device != "auto") {
        throw InvalidArgument("--device: expected cpu, cuda or auto, got '" + o.device + "'");
      }
    } else if (a == "--temp") {
      o.sampling.temperature = to_float(a, value());
    } else if (a == "--top-k") {
      o.sampling.top_k = static_cast<int>(to_int(a, value(), -1, INT32_MAX));
    } else if (a == "--top-p") {
      o.sampling.top_p = to_float(a, value());
    } else if (a == "--min-p") {
      o.sampling.min_p = to_float(a, value());
    } else if (a == "--repeat-penalty") {
      o.sampling.repeat_penalty = to_float(a, value());
    } else if (a == "--repeat-last-n") {
      o.sampling.repeat_last_n = static_cast<int>(to_int(a, value(), -1, INT32_MAX));
    } else if (a == "-s" || a == "--seed") {
      o.sampling.seed = to_seed(a, value(), &o.seed_random);
    } else if (a == "--kv") {
      o.kv = value();
    } else if (a == "--kv-opt") {
      const std::string kvo = value();
      const size_t eq = kvo.find('=');
      if (eq == std::string::npos || eq == 0) throw InvalidArgument("--kv-opt: expected KEY=VALUE, got '" + kvo + "'");
      o.kv_options[kvo.substr(0, eq)] = kvo.substr(eq + 1);
    } else if (a == "--kv-stats") {
      o.kv_stats = true;
    } else if (a == "--stop") {
      o.stop.push_back(value());
    } else if (a == "--no-special") {
      o.no_special = true;
    } else if (a == "--image") {
      o.images.push_back(value());
      if (o.images.back().empty()) throw InvalidArgument("--image: empty file name");
    } else if (a == "--mmproj") {
      o.mmproj = value();
      if (o.mmproj.empty()) throw InvalidArgument("--mmproj: empty file name");
    } else if (a == "--chat-template") {
      o.chat_template = value();
      if (o.chat_template.empty()) throw InvalidArgument("--chat-template: expected vicuna, chatml, none or a FILE");
    } else if (a.empty() || a[0] != '-' || a == "-") {  // a word, not an option (as `pyakvq chat` takes it)
      throw InvalidArgument("unexpected argument '" + a + "': give the prompt with -p/--prompt (see --help)");
    } else {
      throw InvalidArgument("unknown option '" + a + "' (see --help)");
    }
  }
  if (o.help || o.version) return o;
  // no -m: main() looks for the demo model (cli/demo_model.h)
  if (has_prompt == !o.prompt_file.empty()) throw InvalidArgument("give exactly one of -p PROMPT or -f FILE");
  if (o.no_special && !o.images.empty()) {
    throw InvalidArgument("--no-special cannot go with --image: the image markers are special-token text");
  }
  o.sampling.validate();
  return o;
}

}  // namespace akvq::cli
