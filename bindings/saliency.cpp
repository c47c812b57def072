// Bindings for saliency analysis: Session.attention_profile (head-averaged attention
// probabilities per layer, for pyakvq.profile_saliency). Thin: type conversion and GIL release.
#include <akvq/engine.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <vector>

#include "common.h"
#include "engine_call.h"

namespace akvq::bind {

void init_saliency(nb::module_& /*m*/) {  // adds to Session (registered by init_model)
  using F32Array = nb::ndarray<nb::numpy, float>;
  nb::object session = nb::borrow(nb::type<Session>());
  session.attr("attention_profile") = nb::cpp_function(
      [](Session& self, const SessionInput& input, int q_begin) {
        const size_t n_layer = static_cast<size_t>(self.model().info().n_layer);
        const size_t n = input.size();
        const size_t nq = q_begin >= 0 && static_cast<size_t>(q_begin) < n ? n - static_cast<size_t>(q_begin) : 0;
        auto* owner = new std::vector<float>(n_layer * nq * n);
        nb::capsule del(owner, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
        {
          EngineCall r;
          self.attention_profile(input, q_begin, owner->data());
        }
        return F32Array(owner->data(), {n_layer, nq, n}, del);
      },
      nb::is_method(), nb::arg("input"), nb::arg("q_begin"), nb::name("attention_profile"),
      "Head-averaged attention probabilities [n_layer, n - q_begin, n] of the queries at positions\n"
      "[q_begin, n) of input, evaluated from an empty cache in one pass (analysis only).");
}

}  // namespace akvq::bind
