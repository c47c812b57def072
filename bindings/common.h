// Shared declarations for the binding files (one init_<area> per file).
#pragma once
#include <nanobind/nanobind.h>

#include <optional>
#include <string>
#include <vector>

namespace akvq {
struct GenerateParams;
struct GenerateStep;
}  // namespace akvq

namespace akvq::bind {
namespace nb = nanobind;
// GenerateParams from the Python keywords (seed None: a fresh random seed; logprobs None: -1).
GenerateParams generate_params(int max_tokens, float temperature, int32_t top_k, float top_p, float min_p,
                               float repeat_penalty, int32_t repeat_last_n, std::optional<uint64_t> seed,
                               std::vector<std::string> stop, std::optional<int> logprobs);
// s as a Python str, bytes that are not UTF-8 as U+FFFD: text from a file (GGUF metadata, messages
// quoting it), where a UnicodeDecodeError would hide what it says.
nb::str utf8_text(const std::string& s);
// (id, text, finish_reason or None, logprob or None, top_logprobs [(id, logprob), ...] or None)
nb::tuple step_tuple(const GenerateStep& st);
void init_batch(nb::module_& m);
void init_errors(nb::module_& m);
void init_gguf(nb::module_& m);
void init_ops(nb::module_& m);
void init_tokenizer(nb::module_& m);
void init_sampling(nb::module_& m);
void init_model(nb::module_& m);
void init_kvq(nb::module_& m);
void init_image(nb::module_& m);
void init_vision(nb::module_& m);
void init_multimodal(nb::module_& m);
void init_saliency(nb::module_& m);
void init_bandwidth(nb::module_& m);
void init_cuda(nb::module_& m);
}  // namespace akvq::bind
