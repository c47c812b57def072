// Model::Impl: what a loaded model owns (the mapped file, tokenizer, architecture). Internal to
// the engine; frontends see only akvq/engine.h.
#pragma once
#include <memory>

#include "akvq/engine.h"
#include "gguf/gguf.h"
#include "models/llama.h"
#include "tokenizer/tokenizer.h"

namespace akvq {

struct Model::Impl {
  ModelInfo info;
  std::unique_ptr<gguf::File> file;       // must outlive llama (tensor views point into it)
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<models::Llama> llama;
};

}  // namespace akvq
