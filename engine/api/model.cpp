// Model: loading (GGUF -> tokenizer + Llama) and the tokenizer front door.
#include <map>
#include <string>

#include "akvq/error.h"
#include "api/model_impl.h"
#include "cuda/backend.h"

namespace akvq {

namespace {

// The weight type used by most 2-D tensors (ties: the one with more elements), e.g. "Q4_1".
std::string dominant_type(const gguf::File& f) {
  std::map<uint32_t, std::pair<int, int64_t>> count;  // type -> (tensors, elements)
  for (const TensorView& t : f.tensors()) {
    if (t.n_dims != 2) continue;
    auto& c = count[static_cast<uint32_t>(t.type)];
    c.first += 1;
    c.second += t.nelements();
  }
  uint32_t best = 0;
  std::pair<int, int64_t> best_c{-1, -1};
  for (const auto& [type, c] : count) {
    if (c > best_c) best = type, best_c = c;
  }
  return best_c.first < 0 ? std::string("none") : std::string(dtype_name(best));
}

}  // namespace

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

void ModelParams::validate() const {
  if (act_bits != 8 && act_bits != 16) {
    throw InvalidArgument("act_bits must be 8 or 16, got " + std::to_string(act_bits));
  }
  if (device != "cpu" && device != "cuda" && device != "auto") {
    throw InvalidArgument("device must be 'cpu', 'cuda' or 'auto', got '" + device + "'");
  }
}

std::shared_ptr<Model> Model::load(const std::string& path, const ModelParams& params) {
  params.validate();
  std::shared_ptr<Model> m(new Model());
  Impl& im = *m->impl_;
  im.file = gguf::File::open(path);
  const gguf::File& f = *im.file;
  im.llama = std::make_unique<models::Llama>(f, params.act_bits);
  im.tokenizer = Tokenizer::from_gguf(f);
  const models::LlamaHparams& hp = im.llama->hparams();
  const Tokenizer& tok = *im.tokenizer;
  // one row per token, as llama.cpp requires: rows without a token would be sampled and have no
  // text (converters pad the token list to the embedding's rows)
  if (tok.n_vocab() != hp.n_vocab) {
    throw FormatError("[model] " + path + ": the tokenizer has " + std::to_string(tok.n_vocab()) +
                      " tokens but token_embd.weight has " + std::to_string(hp.n_vocab) +
                      " rows (one per token expected)");
  }

  ModelInfo& info = im.info;
  info.path = path;
  info.arch = hp.arch;
  info.name = f.get_str("general.name", "");
  info.n_vocab = hp.n_vocab;
  info.n_ctx_train = hp.n_ctx_train;
  info.n_embd = hp.n_embd;
  info.n_layer = hp.n_layer;
  info.n_head = hp.n_head;
  info.n_head_kv = hp.n_head_kv;
  info.head_dim = hp.head_dim;
  info.n_ff = hp.n_ff;
  info.act_bits = params.act_bits;
  info.packed_bytes = static_cast<int64_t>(im.llama->packed_bytes());
  if (params.device == "auto" && !cuda::is_available()) {
    info.device_note = cuda::status();  // the CPU, and why not the GPU
  } else if (params.device == "cuda" || params.device == "auto") {
    try {
      im.gpu = std::make_unique<cuda::LlamaGpu>(*im.llama);  // Unavailable / OutOfMemory name the reason
      info.device = "cuda";
      info.device_bytes = im.gpu->weight_bytes();
    } catch (const Error& e) {
      if (params.device == "cuda") throw;
      info.device_note = e.what();  // auto: the CPU, and why not the GPU
    }
  }
  info.rope_theta = hp.rope_theta;
  info.rope_freq_scale = hp.rope_freq_scale;
  info.rope_freqs = im.llama->rope_freqs().data != nullptr;
  info.rms_eps = hp.rms_eps;
  info.tokenizer_model = f.get_str("tokenizer.ggml.model", "");
  info.tokenizer_pre = f.get_str("tokenizer.ggml.pre", "");
  info.chat_template = f.get_str("tokenizer.chat_template", "");
  info.image_label = f.get_str("akvq.chat.image_label", "");
  info.chat_image_turn = f.get_str("akvq.chat.image_turn", "");
  info.bos = tok.bos();
  info.eos = tok.eos();
  const auto token_id = [&](const char* key) {  // a token of the vocabulary, else -1
    const int64_t id = f.get_i64(key, -1);
    return id >= 0 && id < tok.n_vocab() ? static_cast<int32_t>(id) : -1;
  };
  info.unk = token_id("tokenizer.ggml.unknown_token_id");
  info.pad = token_id("tokenizer.ggml.padding_token_id");
  info.add_bos = tok.add_bos();
  info.file_type = dominant_type(f);
  for (const TensorView& t : f.tensors()) info.n_params += t.nelements();
  return m;
}

const ModelInfo& Model::info() const { return impl_->info; }

std::vector<int32_t> Model::tokenize(const std::string& text, bool add_special,
                                     bool parse_special) const {
  return impl_->tokenizer->encode(text, add_special, parse_special);
}

std::string Model::detokenize(const std::vector<int32_t>& ids, bool render_special) const {
  const int32_t nv = impl_->tokenizer->n_vocab();
  for (int32_t id : ids) {
    if (id < 0 || id >= nv) {
      throw InvalidArgument("[model] detokenize: token id " + std::to_string(id) +
                            " out of range [0, " + std::to_string(nv) + ")");
    }
  }
  return impl_->tokenizer->decode(ids, render_special);
}

std::string Model::token_piece(int32_t id, bool render_special) const {
  const int32_t nv = impl_->tokenizer->n_vocab();
  if (id < 0 || id >= nv) {
    throw InvalidArgument("[model] token_piece: token id " + std::to_string(id) +
                          " out of range [0, " + std::to_string(nv) + ")");
  }
  return impl_->tokenizer->piece(id, render_special);
}

bool Model::is_eog(int32_t id) const { return impl_->tokenizer->is_eog(id); }

}  // namespace akvq
