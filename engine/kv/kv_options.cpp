// kv_options.h: parsing and validation of kv_options into KvOptions.
#include "kv/kv_options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include "akvq/error.h"

namespace akvq::kv {

namespace {

constexpr int kMaxWindow = 1 << 20;
constexpr int kMaxPivots = 1 << 10;

[[noreturn]] void bad(const std::string& key, const std::string& why) {
  throw InvalidArgument("[kv] kv option '" + key + "': " + why);
}

// The value without surrounding blanks ("window= 5" and "window=5 " alike).
std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

int parse_int(const std::string& key, const std::string& raw, int lo, int hi) {
  const std::string s = trim(raw);  // list items ("0, 1")
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0) bad(key, "'" + s + "' is not an integer");
  if (v < lo || v > hi) {
    bad(key, s + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(v);
}

float parse_float(const std::string& key, const std::string& s, float lo, float hi) {
  errno = 0;
  char* end = nullptr;
  const float v = std::strtof(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v)) bad(key, "'" + s + "' is not a finite number");
  if (!(v > lo) || v > hi) {
    std::ostringstream o;
    o << s << " is out of range (" << lo << ", " << hi << "]";
    bad(key, o.str());
  }
  return v;
}

bool parse_bool(const std::string& key, const std::string& s) {
  if (s == "1" || s == "true" || s == "on") return true;
  if (s == "0" || s == "false" || s == "off") return false;
  bad(key, "'" + s + "' (expected 1/0, true/false or on/off)");
}

int parse_bits(const std::string& key, const std::string& s) {
  const int b = parse_int(key, s, 2, 8);
  if (b != 2 && b != 3 && b != 4 && b != 8) bad(key, s + " bits: supported 2, 3, 4, 8");
  return b;
}

std::vector<int> parse_layers(const std::string& key, const std::string& s, int n_layer) {
  std::vector<int> out;
  if (const std::string t = trim(s); t == "none" || t.empty()) return out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_int(key, item, 0, n_layer - 1));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string fmt(float v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

std::string join(const std::vector<int>& v) {
  if (v.empty()) return "none";
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

float default_clip(int bits, Levels levels) {
  if (bits > 2) return defaults::kClip4;
  return levels == Levels::Uniform ? defaults::kClip2 : defaults::kClipGauss2;
}

}  // namespace

const std::vector<std::string>& kv_modes() {
  static const std::vector<std::string> m{"f16", "q8", "q4", "q2", "kivi2", "wht2", "akvq2", "akvq4"};
  return m;
}

KvOptions resolve_kv_options(const std::string& mode, const std::map<std::string, std::string>& options,
                             int n_layer, int head_dim, const std::vector<int>* file_tsa) {
  const auto& modes = kv_modes();
  if (std::find(modes.begin(), modes.end(), mode) == modes.end()) {
    std::string list;
    for (const auto& m : modes) list += (list.empty() ? "" : ", ") + m;
    throw InvalidArgument("[kv] kv mode '" + mode + "' is not supported (supported: " + list + ")");
  }
  static const std::set<std::string> kAll{"bits",       "group",    "window",       "pivots", "clip",
                                          "clip_k",     "clip_v",   "k_bits",       "v_bits", "levels",
                                          "tsa_layers", "tsa_bits", "pivot_factor", "rotate",
                                          "checkpoint", "lut",      "pv_bf16"};
  static const std::set<std::string> kKivi{"window", "clip", "clip_k", "clip_v", "checkpoint"};
  KvOptions o;
  o.mode = mode;
  for (const auto& [key, value] : options) {
    (void)value;
    if (!kAll.count(key)) bad(key, "unknown option (known: bits, group, window, pivots, clip, clip_k, clip_v, "
                                   "k_bits, v_bits, levels, tsa_layers, tsa_bits, pivot_factor, rotate, "
                                   "checkpoint, lut, pv_bf16)");
    if (mode == "f16") bad(key, "does not apply to kv mode 'f16'");
    if (mode == "kivi2" && !kKivi.count(key)) bad(key, "does not apply to kv mode 'kivi2'");
  }
  if (mode == "f16") return o;
  o.quantized = true;
  std::map<std::string, std::string> values;  // without surrounding blanks: "window= 5", "levels=auto "
  for (const auto& [key, value] : options) values[key] = trim(value);
  auto get = [&](const char* key) -> const std::string* {
    auto it = values.find(key);
    return it == values.end() ? nullptr : &it->second;
  };
  const bool akvq = mode == "akvq2" || mode == "akvq4";
  o.kivi = mode == "kivi2";
  o.rotate = akvq || mode == "wht2";
  if (const auto* s = get("rotate")) o.rotate = parse_bool("rotate", *s);  // e.g. akvq2 without its WHT
  int bits = mode == "q8" ? 8 : (mode == "q4" || mode == "akvq4") ? 4 : 2;
  o.window = akvq || o.kivi ? defaults::kWindow : 0;
  o.pivots = akvq ? defaults::kPivots : 0;
  if (const auto* s = get("bits")) bits = parse_bits("bits", *s);
  int k_bits = bits, v_bits = bits;
  if (const auto* s = get("k_bits")) k_bits = parse_bits("k_bits", *s);
  if (const auto* s = get("v_bits")) v_bits = parse_bits("v_bits", *s);
  int tsa_bits = defaults::kTsaBits;
  if (const auto* s = get("tsa_bits")) tsa_bits = parse_bits("tsa_bits", *s);
  if (const auto* s = get("window")) o.window = parse_int("window", *s, 0, kMaxWindow);
  if (const auto* s = get("pivots")) o.pivots = parse_int("pivots", *s, 0, kMaxPivots);
  if (const auto* s = get("pivot_factor")) o.pivot_factor = parse_float("pivot_factor", *s, 0.0f, 1e6f);
  o.checkpoint = o.window > 0 || o.pivots > 0;
  if (const auto* s = get("checkpoint")) o.checkpoint = parse_bool("checkpoint", *s) && (o.window > 0 || o.pivots > 0);
  // levels: explicit, or auto (Gaussian below defaults::kGaussBelowBits bits in the akvq modes)
  bool auto_levels = true;
  Levels levels = Levels::Uniform;
  if (const auto* s = get("levels")) {
    auto_levels = *s == "auto";
    if (*s == "uniform") levels = Levels::Uniform;
    else if (*s == "gaussian") levels = Levels::Gaussian;
    else if (!auto_levels) bad("levels", "'" + *s + "' (expected auto, uniform or gaussian)");
  }
  auto levels_for = [&](int b) {
    if (!auto_levels) return levels;
    return akvq && b < defaults::kGaussBelowBits ? Levels::Gaussian : Levels::Uniform;
  };
  if (!auto_levels && levels == Levels::Gaussian) {
    if (k_bits > 4) bad(get("k_bits") ? "k_bits" : "bits", std::to_string(k_bits) + " bits with gaussian levels (at most 4)");
    if (v_bits > 4) bad(get("v_bits") ? "v_bits" : "bits", std::to_string(v_bits) + " bits with gaussian levels (at most 4)");
    if (tsa_bits > 4) bad("tsa_bits", std::to_string(tsa_bits) + " bits with gaussian levels (at most 4)");
  }
  int group = 0;
  if (const auto* s = get("group")) {
    group = parse_int("group", *s, 8, head_dim);
    if (group % 8 != 0 || head_dim % group != 0) {
      bad("group", *s + " must be a multiple of 8 that divides head_dim = " + std::to_string(head_dim));
    }
  }
  float clip_k = -1, clip_v = -1;
  if (const auto* s = get("clip")) clip_k = clip_v = parse_float("clip", *s, 0.0f, 4.0f);
  if (const auto* s = get("clip_k")) clip_k = parse_float("clip_k", *s, 0.0f, 4.0f);
  if (const auto* s = get("clip_v")) clip_v = parse_float("clip_v", *s, 0.0f, 4.0f);
  auto spec = [&](int b, float clip) {
    QuantSpec q;
    q.bits = b;
    q.group = group;
    q.levels = levels_for(b);
    q.clip = clip > 0 ? clip : default_clip(b, q.levels);
    return q;
  };
  if (o.kivi) k_bits = v_bits = 2;
  bool lut = defaults::kLut;
  if (const auto* s = get("lut")) lut = parse_bool("lut", *s);
  o.k_low = spec(k_bits, clip_k);
  o.v_low = spec(v_bits, clip_v);
  o.k_tsa = spec(tsa_bits, clip_k);
  o.v_tsa = spec(tsa_bits, clip_v);
  o.k_low.lut = o.k_tsa.lut = lut && !o.kivi;  // K scores only (V rows are accumulated, not scored)
  bool pv_bf16 = defaults::kPvBf16;
  if (const auto* s = get("pv_bf16")) pv_bf16 = parse_bool("pv_bf16", *s);
  o.v_low.pv_bf16 = o.v_tsa.pv_bf16 = pv_bf16 && !o.kivi;  // V rows only (K rows are scored)
  if (o.kivi) o.k_low.group = defaults::kKiviBlock;  // K: one group = 32 tokens of one channel
  try {
    o.k_low.validate(o.kivi ? defaults::kKiviBlock : head_dim);
    o.v_low.validate(head_dim);
    o.k_tsa.validate(head_dim);
    o.v_tsa.validate(head_dim);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(std::string("[kv] kv option 'group': ") + e.what());
  }
  if (o.kivi) {
    o.tsa_layers.clear();
  } else if (const auto* s = get("tsa_layers")) {
    o.tsa_layers = parse_layers("tsa_layers", *s, n_layer);
  } else if (akvq) {
    o.tsa_layers = file_tsa ? *file_tsa : defaults::tsa_layers();
    std::sort(o.tsa_layers.begin(), o.tsa_layers.end());
    o.tsa_layers.erase(std::remove_if(o.tsa_layers.begin(), o.tsa_layers.end(),
                                      [&](int l) { return l < 0 || l >= n_layer; }),
                       o.tsa_layers.end());
  }

  auto& r = o.resolved;
  r["window"] = std::to_string(o.window);
  r["checkpoint"] = o.checkpoint ? "1" : "0";
  r["clip_k"] = fmt(o.k_low.clip);
  r["clip_v"] = fmt(o.v_low.clip);
  if (o.k_low.clip == o.v_low.clip) r["clip"] = fmt(o.k_low.clip);
  if (o.kivi) return o;
  r["bits"] = std::to_string(bits);
  r["k_bits"] = std::to_string(k_bits);
  r["v_bits"] = std::to_string(v_bits);
  r["group"] = std::to_string(o.k_low.group_size(head_dim));
  r["pivots"] = std::to_string(o.pivots);
  r["levels"] = auto_levels ? std::string("auto (") + levels_name(o.k_low.levels) + " at " + std::to_string(k_bits) +
                                  " bits, " + levels_name(o.k_tsa.levels) + " at " + std::to_string(tsa_bits) + ")"
                            : std::string(levels_name(levels));
  r["tsa_layers"] = join(o.tsa_layers);
  r["tsa_bits"] = std::to_string(tsa_bits);
  r["pivot_factor"] = fmt(o.pivot_factor);
  r["rotate"] = o.rotate ? "1" : "0";
  r["lut"] = lut ? "1" : "0";
  r["pv_bf16"] = pv_bf16 ? "1" : "0";
  return o;
}

}  // namespace akvq::kv
