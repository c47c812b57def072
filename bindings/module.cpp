// The private extension module pyakvq._akvq. Only wiring: each area registers itself.
#include <nanobind/nanobind.h>

#include "common.h"

NB_MODULE(_akvq, m) {
  m.doc() = "pyakvq native engine (private; use the pyakvq package)";
  akvq::bind::init_errors(m);
  akvq::bind::init_gguf(m);
  akvq::bind::init_ops(m);
  akvq::bind::init_tokenizer(m);
  akvq::bind::init_sampling(m);
  akvq::bind::init_model(m);
  akvq::bind::init_kvq(m);
  akvq::bind::init_image(m);
  akvq::bind::init_vision(m);  // after init_model: adds Session calls
  akvq::bind::init_multimodal(m);
  akvq::bind::init_saliency(m);  // after init_vision: Session.attention_profile
  akvq::bind::init_bandwidth(m);
  akvq::bind::init_batch(m);
  akvq::bind::init_cuda(m);
}
