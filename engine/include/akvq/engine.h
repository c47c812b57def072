// Public C++ API of the engine: a Model (weights, tokenizer, architecture; immutable, shareable)
// and a Session (KV cache, workspace, thread pool; used by one thread at a time).
// Frontends (Python bindings, akvq-cli) use only this header, error.h and sampler.h.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
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
  float rope_freq_scale = 1;   // 1 / rope.scaling.factor (linear RoPE scaling), else 1
  bool rope_freqs = false;     // the file has per-pair RoPE frequency divisors (rope_freqs.weight, Llama 3)
  float rms_eps = 0;
  std::string tokenizer_model;  // "gpt2" | "llama"
  std::string tokenizer_pre;    // e.g. "smollm"
  std::string chat_template;    // Jinja text, "" when absent
  // akvq.chat.image_label: what the model's chat template puts after each image marker's line
  // when a turn has several images ("{k}": the image's number from 1; e.g. "Image {k}.\n"), for
  // the built-in chat formats, which do not render the Jinja template; "" when absent
  std::string image_label;
  // akvq.chat.image_turn: the chat template's one user turn with images first, as akvq-convert
  // rendered it, with {images} (one marker line per image) and {prompt} placeholders; "" when
  // absent (pyakvq/convert/chat_turn.py)
  std::string chat_image_turn;
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t unk = -1;  // tokenizer.ggml.unknown_token_id, -1 when none (or out of the vocabulary)
  int32_t pad = -1;  // tokenizer.ggml.padding_token_id, likewise
  bool add_bos = false;
  std::string file_type;        // dominant weight type, e.g. "Q4_1"
  int64_t n_params = 0;
  int act_bits = 16;            // activation precision of the quantized matmuls (ModelParams)
  int64_t packed_bytes = 0;     // memory of the weights repacked at load for the active kernels
  std::string device = "cpu";   // where the decoder runs: "cpu" or "cuda"
  int64_t device_bytes = 0;     // GPU memory of the uploaded weights (device "cuda")
  std::string device_note;      // device "auto" that fell back to the CPU: why the GPU was not used
};

// How a model is loaded.
struct ModelParams {
  // Precision of the activations the quantized matmuls multiply the weights with: 16 (default:
  // ~2^-16 of each block's largest value, far below the weights' own error) or 8 (~2^-8, as
  // llama.cpp's Q8 activations: about twice as fast prefill with the AVX-512 kernels, slightly
  // different logits). Float weights (F32/F16/BF16) always use f32 activations.
  int act_bits = 16;
  // Where the decoder runs: "cpu" (default), "cuda" (GPU 0; throws Unavailable when there is no
  // usable GPU, with the reason) or "auto" (the GPU when cuda::is_available() and the model fits
  // it, else the CPU: ModelInfo::device_note says why). On
  // the GPU the weights are uploaded once in their stored types, activations are f32 (act_bits
  // does not apply) and the KV caches are held for the GPU (cuda::LlamaGpu::make_cache); the vision
  // tower runs on the CPU.
  std::string device = "cpu";
  void validate() const;  // throws InvalidArgument naming the bad field
};

class Model {
 public:
  // Memory-maps and validates the GGUF file; the matmul weights are repacked for the active
  // kernels when they prefer another layout (ModelInfo::packed_bytes). Throws IoError /
  // FormatError, InvalidArgument for bad params.
  static std::shared_ptr<Model> load(const std::string& path, const ModelParams& params = {});
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

// The id Session::tokens() shows for an embedding row unless the input names another one.
constexpr int32_t kEmbeddingRowId = -1;

// The input of a Session evaluation: rows in order, each either a token id or an embedding row
// [n_embd] given directly (e.g. projected image features from VisionModel::encode; no fake token
// ids), each with its kind (KV precision classes are kept per position). Embedding rows carry a
// content hash so that prefix matching (Session::eval_prompt) compares what they hold.
class SessionInput {
 public:
  SessionInput() = default;
  // Token rows only; implicit, so a token prompt is an input (e.g. for Generator).
  SessionInput(const std::vector<int32_t>& ids, TokenKind kind = TokenKind::Text) { add_tokens(ids, kind); }
  SessionInput(std::initializer_list<int32_t> ids) { add_tokens(ids); }
  static SessionInput from_tokens(const std::vector<int32_t>& ids, TokenKind kind = TokenKind::Text) {
    return SessionInput(ids, kind);
  }

  void add_tokens(const std::vector<int32_t>& ids, TokenKind kind = TokenKind::Text);
  void add_token(int32_t id, TokenKind kind = TokenKind::Text);
  // Appends rows [n_rows, n_embd] (copied). Every embedding row of an input has the same n_embd.
  // content_id identifies the content for prefix matching (e.g. a hash of the image's pixels):
  // row i gets a hash of (content_id, i); 0: a hash of the row's values. placeholder: the id
  // Session::tokens() shows for these rows (e.g. the image token). Throws InvalidArgument on a
  // null pointer, n_rows < 1, n_embd < 1 or a width different from earlier rows.
  void add_embeddings(const float* rows, int n_rows, int n_embd, TokenKind kind = TokenKind::Vision,
                      uint64_t content_id = 0, int32_t placeholder = kEmbeddingRowId);

  size_t size() const { return ids_.size(); }
  bool empty() const { return ids_.empty(); }
  int n_embd() const { return n_embd_; }                       // width of the embedding rows (0: none)
  const std::vector<int32_t>& ids() const { return ids_; }         // [size] token id or placeholder
  const std::vector<TokenKind>& kinds() const { return kinds_; }   // [size]
  const std::vector<uint64_t>& hashes() const { return hashes_; }  // [size] 0: token row, else content
  const std::vector<int32_t>& embd_index() const { return embd_index_; }  // [size] -1 or row of embeddings()
  const std::vector<float>& embeddings() const { return embd_; }   // [n_embedding_rows, n_embd]
  bool is_embedding(size_t i) const { return embd_index_[i] >= 0; }
  // Rows [begin, end) as a new input (embedding rows copied).
  SessionInput slice(size_t begin, size_t end) const;

 private:
  std::vector<int32_t> ids_;
  std::vector<TokenKind> kinds_;
  std::vector<uint64_t> hashes_;
  std::vector<int32_t> embd_index_;
  std::vector<float> embd_;
  int n_embd_ = 0;
};

struct SessionParams {
  int n_ctx = 4096;      // capacity of the KV cache in tokens (> 0)
  int n_threads = 0;     // 0: default (cores available)
  std::string kv = "f16";  // KV cache storage mode
  int n_batch = 256;     // prefill chunk size
  // KV cache options, raw "key" -> "value" (bits, group, window, pivots, clip, clip_k, clip_v,
  // k_bits, v_bits, levels, tsa_layers, tsa_bits, pivot_factor, rotate, checkpoint, lut); validated
  // by the cache mode, unknown keys and bad values throw InvalidArgument naming the option.
  std::map<std::string, std::string> kv_options;
  // Called between the chunks of a prompt's evaluation (not after the last); it may throw to stop
  // the evaluation, which then rolls the cache back to where it was and rethrows. Empty: none.
  // (The Python bindings check for Ctrl-C here.)
  std::function<void()> interrupt;
  void validate() const;  // throws InvalidArgument naming the bad field
};

struct KvClassStats {
  std::string name;  // e.g. "fp16_window", "fp16_pivot", "q2", "q2g" (Gaussian levels), "q4", "k4v2"
  int64_t tokens = 0;
  int64_t bytes = 0;  // K and V, all KV heads
  // tokens of the class by kind, indexed by TokenKind (text, vision, generated)
  int64_t kinds[3] = {0, 0, 0};
};
struct KvLayerStats {
  std::vector<KvClassStats> classes;
  std::vector<int32_t> pivots;  // token positions of the pivots, ascending
  int64_t kinds[3] = {0, 0, 0};  // tokens stored in the layer by kind, indexed by TokenKind
};
struct KvSummary {
  std::string mode;
  int64_t n_tokens = 0;
  int64_t bytes = 0;
  // bytes plus what the cache holds besides its K/V rows: the checkpoint's fp16 copy of the
  // window and pivots (kv option `checkpoint`), which a memory budget prices (bytes_bound)
  int64_t bytes_reserved = 0;
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
  // The rows in the cache, in order: token ids (embedding rows show their placeholder id), their
  // kinds, and their content hashes (0 for token rows; see SessionInput). Prefix matching
  // compares ids and hashes.
  const std::vector<int32_t>& tokens() const;
  const std::vector<TokenKind>& kinds() const;
  const std::vector<uint64_t>& row_hashes() const;
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

  // Mixed input (token ids and embedding rows, a kind per row, see SessionInput): the same three
  // calls. Throws InvalidArgument as above, and when the embedding rows' width differs from the
  // model's n_embd.
  // Batch-invariant like the token path: a row's result does not depend on n_batch.
  const float* eval_rows(const SessionInput& input);
  void eval_all_rows(const SessionInput& input, float* out);  // out [input.size(), n_vocab]
  // Prefix reuse compares token ids and embedding-row hashes (a changed image is re-evaluated);
  // kinds are not compared (as for eval_prompt(ids)).
  const float* eval_prompt_rows(const SessionInput& input, int* n_reused = nullptr);

  KvSummary kv_summary() const;

  // Analysis path (saliency profiling, not used by evaluation or generation): evaluates input
  // from an empty cache in one forward pass and writes, per layer, the attention probabilities of
  // the queries at positions [q_begin, n) over the keys [0, n), averaged over the query heads:
  // softmax(scale * q.k) from the layer's RoPE'd queries and keys as computed (full precision,
  // whatever the cache mode; double accumulation); entries after a query's own position are 0.
  // out: [n_layer, n - q_begin, n], n = input.size(). The session then holds input as after
  // eval_rows. Throws InvalidArgument like eval_rows, and for q_begin outside [0, n).
  void attention_profile(const SessionInput& input, int q_begin, float* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace akvq
