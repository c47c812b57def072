// Public C++ API of the engine: a Model (weights, tokenizer, architecture; immutable, shareable)
// and a Session (KV cache, workspace, thread pool; used by one thread at a time).
// Frontends (Python bindings, akvq-cli) use only this header, error.h and sampler.h.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace akvq {

struct ModelInfo {
  std::string path;
  std::string arch;            // general.architecture
  std::string name;            // general.name
  int n_vocab = 0;
  int n_ctx_train = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ff = 0;
  float rope_theta = 0;
  float rms_eps = 0;
  std::string tokenizer_model;  // "gpt2" | "llama"
  std::string tokenizer_pre;    // e.g. "smollm"
  std::string chat_template;    // Jinja text, "" when absent
  int32_t bos = -1;
  int32_t eos = -1;
  bool add_bos = false;
  std::string file_type;        // dominant weight type, e.g. "Q4_1"
  int64_t n_params = 0;
};

class Model {
 public:
  // Memory-maps and validates the GGUF file. Throws IoError / FormatError.
  static std::shared_ptr<Model> load(const std::string& path);
  ~Model();

  const ModelInfo& info() const;
  // add_special: BOS/EOS as the vocabulary says; parse_special: "<|im_start|>"-style text
  // becomes the special token.
  std::vector<int32_t> tokenize(const std::string& text, bool add_special = true,
                                bool parse_special = true) const;
  std::string detokenize(const std::vector<int32_t>& ids, bool render_special = false) const;
  std::string token_piece(int32_t id, bool render_special = false) const;  // raw bytes
  bool is_eog(int32_t id) const;  // end of generation (EOS, end-of-turn, ...)

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  Model();
  std::unique_ptr<Impl> impl_;
};

// Kind of a context token (the AKVQ cache keeps precision classes per kind).
enum class TokenKind : uint8_t { Text = 0, Vision = 1, Generated = 2 };

struct SessionParams {
  int n_ctx = 4096;      // capacity of the KV cache in tokens (> 0)
  int n_threads = 0;     // 0: default (cores available)
  std::string kv = "f16";  // KV cache storage mode
  int n_batch = 256;     // prefill chunk size
  // KV cache options, raw "key" -> "value" (bits, group, window, pivots, clip, clip_k, clip_v,
  // k_bits, v_bits, levels, tsa_layers, tsa_bits, pivot_factor); validated by the cache mode,
  // unknown keys and bad values throw InvalidArgument naming the option.
  std::map<std::string, std::string> kv_options;
  void validate() const;  // throws InvalidArgument naming the bad field
};

struct KvClassStats {
  std::string name;  // e.g. "fp16_window", "fp16_pivot", "q2", "q2g" (Gaussian levels), "q4", "k4v2"
  int64_t tokens = 0;
  int64_t bytes = 0;  // K and V, all KV heads
};
struct KvLayerStats {
  std::vector<KvClassStats> classes;
  std::vector<int32_t> pivots;  // token positions of the pivots, ascending
};
struct KvSummary {
  std::string mode;
  int64_t n_tokens = 0;
  int64_t bytes = 0;
  // bytes * 8 / (n_tokens * n_layer * n_head_kv * head_dim * 2): codes, scales, window, pivots
  double bits_per_element = 0;
  std::vector<KvLayerStats> layers;
  std::vector<int32_t> tsa_layers;
  std::map<std::string, std::string> options;  // resolved options (defaults filled in)
};

class Session {
 public:
  Session(std::shared_ptr<const Model> model, const SessionParams& p);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const;
  const SessionParams& params() const;
  int n_past() const;                          // tokens in the cache
  const std::vector<int32_t>& tokens() const;  // the tokens in the cache, in order
  void reset();                                // empty the cache
  void truncate(int n);                        // keep the first n tokens (n <= n_past)

  // Appends ids to the context, evaluating them in chunks of n_batch. Returns the logits of
  // the last token [n_vocab] (valid until the next call). Throws InvalidArgument when ids is
  // empty, an id is out of range, or n_past + ids.size() > n_ctx (nothing is appended then).
  // kind applies to every id of the call (KV precision classes).
  const float* eval(const std::vector<int32_t>& ids, TokenKind kind = TokenKind::Text);
  // Same, writing the logits of every position of ids into out [ids.size(), n_vocab].
  void eval_all(const std::vector<int32_t>& ids, float* out, TokenKind kind = TokenKind::Text);

  // Evaluates a whole prompt for a new request and returns the logits of its last token
  // [n_vocab]. Reuses the longest prefix of the cache whose state can be restored exactly (the
  // state a fresh session reaches on the same tokens); everything after it is re-evaluated, so
  // the result depends on ids alone, never on earlier calls. *n_reused (optional): tokens kept.
  // Throws InvalidArgument like eval() (empty, bad id, longer than n_ctx).
  const float* eval_prompt(const std::vector<int32_t>& ids, TokenKind kind = TokenKind::Text,
                           int* n_reused = nullptr);

  KvSummary kv_summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace akvq
