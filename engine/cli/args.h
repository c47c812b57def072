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
  std::string kv = "f16";
  std::map<std::string, std::string> kv_options;  // --kv-opt key=value
  bool kv_stats = false;
  std::vector<std::string> stop;
  bool no_special = false;  // don't turn "<|...|>" text in the prompt into special tokens
  bool help = false;
  SamplingParams sampling;
};

// Throws akvq::InvalidArgument with a one-line message on bad input.
Options parse_args(int argc, char** argv);
const char* usage();

}  // namespace akvq::cli
