// KV cache modes and options: parsing and validation of the raw kv_options map into a resolved
// configuration (defaults filled in). Every default lives in the named constants below.
//
// Modes (AKVQ.md, baselines table):
//   f16            fp16 K/V (no options)
//   q8 / q4 / q2   per-token b-bit group quantization, no rotation, no window, no pivots
//   wht2           WHT rotation + 2-bit per token, no window, no pivots
//   akvq2 / akvq4  rotation, fp16 window, fp16 pivots, TSA layers (text at tsa_bits), b-bit rest
//   kivi2          K 2-bit per channel (groups of 32 tokens), V 2-bit per token, fp16 window
// The quantized per-token modes share one engine: every option applies to them (q2 with a window
// is a legal ablation, and so is akvq2 with rotate=0: no WHT). kivi2 takes window, clip, clip_k, clip_v,
// checkpoint.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "kv/quant.h"

namespace akvq::kv {

namespace defaults {
constexpr int kWindow = 96;          // fp16 window of the akvq modes (tokens): the widest that keeps akvq2
                                     // <= 3.0 bits per element at n_ctx 4096 even with all 15 pivots
                                     // (2.95 + 15 x 0.0033); bench/RESULTS.md, AKVQ ablations
constexpr int kPivots = 15;          // fp16 pivot tokens per layer of the akvq modes
constexpr int kTsaBits = 4;          // text bits in TSA layers
constexpr float kPivotFactor = 20;   // pivot: max|x| >= factor * median of per-token max|x|
constexpr float kClip2 = 0.6f;       // clip ratio at <= 2 bits (uniform levels); the paper's 0.8 measured
                                     // worse on SmolLM2 (bench/RESULTS.md, AKVQ ablations)
constexpr float kClipGauss2 = 0.9f;  // clip ratio at <= 2 bits with Gaussian levels (same ablations)
constexpr float kClip4 = 1.0f;       // clip ratio at >= 3 bits (uniform or Gaussian)
// Levels when the `levels` option is not given ("auto"): the akvq modes use the Gaussian
// (Lloyd–Max) levels below kGaussBelowBits bits — rotated rows are close to Gaussian, and at 2 bits
// these measured better than uniform levels at every clip (bench/RESULTS.md) — and uniform levels
// at 4 bits and more (min/max over a group of 64 is finer there). The baselines (q8 q4 q2 wht2)
// keep uniform levels.
constexpr int kGaussBelowBits = 4;
// K scores of 2-bit rows from 8-bit pair tables where the CPU has the kernels (QuantSpec::lut):
// ~2.4x faster scores on AVX2; the tables' RMS error is 2-3% of the 2-bit codes' own error in the
// scores (test_kv_quant_lut.cpp; bench/RESULTS.md, "Table scores").
constexpr bool kLut = true;
// V rows of 2 and 4 bits accumulated from bf16 pairs where the CPU runs the AVX-512 kernels
// (QuantSpec::pv_bf16): fewer instructions for the largest part of the 2-bit attention at depth;
// the quality and speed figures are in bench/RESULTS.md ("P·V from bf16 pairs").
constexpr bool kPvBf16 = true;
constexpr int kKiviBlock = 32;       // kivi2: tokens per K group along the sequence
inline const std::vector<int>& tsa_layers() {  // when the model file does not say
  static const std::vector<int> v{0, 1};
  return v;
}
}  // namespace defaults

struct KvOptions {
  std::string mode;
  bool quantized = false;  // false: f16
  bool kivi = false;
  bool rotate = false;
  int window = 0;
  int pivots = 0;
  float pivot_factor = defaults::kPivotFactor;
  // Keep a checkpoint (KvCache::checkpoint): an fp16 copy of the window and pivots at the point a
  // prompt marks for reuse, so that a later prompt sharing that prefix is restored exactly instead
  // of evaluated again. Costs up to (window + pivots) fp16 rows per layer, priced by bytes_bound.
  // Only meaningful with a window or pivots.
  bool checkpoint = false;
  QuantSpec k_low, v_low;  // non-TSA layers, and vision tokens in TSA layers
  QuantSpec k_tsa, v_tsa;  // text and generated tokens in TSA layers
  std::vector<int> tsa_layers;                   // ascending
  std::map<std::string, std::string> resolved;   // every applicable option, as strings
};

// Every mode name, in the order of AKVQ.md.
const std::vector<std::string>& kv_modes();

// Resolves mode + raw options for a cache of n_layer layers and rows of head_dim values.
// file_tsa: the model's `akvq.tsa_layers` (nullptr when absent). Throws InvalidArgument:
// "[kv] kv mode '...' is not supported (...)" or "[kv] kv option 'clip': ..." naming the option.
KvOptions resolve_kv_options(const std::string& mode, const std::map<std::string, std::string>& options,
                             int n_layer, int head_dim, const std::vector<int>* file_tsa);

}  // namespace akvq::kv
