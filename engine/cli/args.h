// Command-line options of akvq-cli.
#pragma once
#include <akvq/sampler.h>

#include <map>
#include <string>
#include <vector>

namespace akvq::cli {

struct Options {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int n_predict = 128;
  int n_ctx = 4096;
  int n_threads = 0;
  int n_batch = 256;
  int act_bits = 16;  // --act-bits 8|16: activation precision of the quantized matmuls
  std::string device = "cpu";  // --device cpu|cuda|auto
  std::string kv = "f16";
  std::map<std::string, std::string> kv_options;  // --kv-opt key=value
  bool kv_stats = false;
  std::vector<std::string> stop;
  bool no_special = false;          // don't turn "<|...|>" text in the prompt into special tokens
  std::string mmproj;               // --mmproj FILE: vision tower of llama.cpp's two-file layout
  std::vector<std::string> images;  // --image FILE (repeatable), in prompt order
  std::string chat_template;        // --chat-template vicuna|chatml|none|FILE ("": vicuna with images)
  bool help = false;                // -h/--help: usage on stdout, exit 0
  bool version = false;             // --version: version on stdout, exit 0
  bool no_args = false;             // no arguments at all: usage on stderr, exit 2
  bool seed_random = true;          // no -s, or -s -1: sampling.seed was drawn at random
  SamplingParams sampling;
};

// Limits checked at parse time; the same as the engine's and the Python API's.
constexpr int kMaxCtx = 1 << 20;
constexpr int kMaxThreads = 512;
constexpr int kMaxBatch = 1 << 16;

// Throws akvq::InvalidArgument with a one-line message on bad input.
Options parse_args(int argc, char** argv);
const char* usage();
const char* version();  // "akvq-cli X.Y.Z"
// Handles --help, --version and a call without arguments: prints what they ask for and returns
// the exit code; returns -1 when the options ask for a run.
int print_info(const Options& o);

}  // namespace akvq::cli
