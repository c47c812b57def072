// Shared declarations for the binding files (one init_<area> per file).
#pragma once
#include <nanobind/nanobind.h>

namespace akvq::bind {
namespace nb = nanobind;
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
}  // namespace akvq::bind
