// Bindings for BatchGenerator (continuous batching, akvq/batch.h). step() releases the GIL;
// submit / cancel / stats may be called from other threads while a step runs.
#include <akvq/batch.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "common.h"
#include "engine_call.h"

namespace akvq::bind {

void init_batch(nb::module_& m) {
  nb::class_<BatchGenerator>(m, "BatchGenerator")
      .def(
          "__init__",
          [](BatchGenerator* self, std::shared_ptr<Model> model, int n_parallel, int n_ctx, int n_threads,
             std::string kv, std::map<std::string, std::string> kv_options, int n_batch, int64_t kv_memory,
             int max_queue) {
            BatchParams p;
            p.n_parallel = n_parallel;
            p.n_ctx = n_ctx;
            p.n_threads = n_threads;
            p.kv = std::move(kv);
            p.kv_options = std::move(kv_options);
            p.n_batch = n_batch;
            p.kv_memory = kv_memory;
            p.max_queue = max_queue;
            new (self) BatchGenerator(std::move(model), p);
          },
          nb::arg("model"), nb::arg("n_parallel") = 4, nb::arg("n_ctx") = 4096, nb::arg("n_threads") = 0,
          nb::arg("kv") = "f16", nb::arg("kv_options") = std::map<std::string, std::string>(), nb::arg("n_batch") = 256,
          nb::arg("kv_memory") = 0, nb::arg("max_queue") = 1024)
      .def_prop_ro("n_slots", &BatchGenerator::n_slots)
      .def_prop_ro("kv_bytes_per_sequence", &BatchGenerator::kv_bytes_per_sequence)
      .def(
          "submit",
          [](BatchGenerator& self, SessionInput prompt, int max_tokens, float temperature, int32_t top_k, float top_p,
             float min_p, float repeat_penalty, int32_t repeat_last_n, std::optional<uint64_t> seed,
             std::vector<std::string> stop, std::optional<int> logprobs) {
            const GenerateParams p = generate_params(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                                     repeat_last_n, seed, std::move(stop), logprobs);
            int64_t id = 0;
            {
              nb::gil_scoped_release rel;  // may wait for a step's bookkeeping (short)
              id = self.submit(std::move(prompt), p);
            }
            return nb::make_tuple(id, p.sampling.seed);
          },
          nb::arg("prompt"), nb::arg("max_tokens") = 128, nb::arg("temperature") = 0.8f, nb::arg("top_k") = 40,
          nb::arg("top_p") = 0.95f, nb::arg("min_p") = 0.0f, nb::arg("repeat_penalty") = 1.0f,
          nb::arg("repeat_last_n") = 64, nb::arg("seed") = nb::none(), nb::arg("stop") = std::vector<std::string>(),
          nb::arg("logprobs") = nb::none())
      .def("cancel", &BatchGenerator::cancel, nb::arg("id"), nb::call_guard<nb::gil_scoped_release>())
      // step() -> [(id, step_tuple or None, done, finish or None, error or None, n_prompt, n_reused,
      //             n_generated), ...]
      .def("step",
           [](BatchGenerator& self) {
             std::vector<BatchEvent> ev;
             {
               EngineCall r;
               ev = self.step();
             }
             nb::list out;
             for (const BatchEvent& e : ev) {
               nb::object step = e.has_step ? nb::object(step_tuple(e.step)) : nb::none();
               nb::object finish = e.finish == FinishReason::None ? nb::object(nb::none())
                                                                  : nb::object(nb::str(finish_reason_name(e.finish)));
               nb::object error = e.error.empty() ? nb::object(nb::none()) : nb::object(nb::str(e.error.c_str()));
               out.append(nb::make_tuple(e.id, step, e.done, finish, error, e.n_prompt, e.n_reused, e.n_generated));
             }
             return out;
           })
      .def_prop_ro("idle", &BatchGenerator::idle)
      .def_prop_ro("stats", [](const BatchGenerator& self) {
        const BatchStats s = self.stats();
        nb::dict d;
        d["n_slots"] = s.n_slots;
        d["requests_running"] = s.running;
        d["requests_queued"] = s.queued;
        d["requests_total"] = s.requests_total;
        d["prompt_tokens_total"] = s.prompt_tokens_total;
        d["generated_tokens_total"] = s.generated_tokens_total;
        d["steps_total"] = s.steps_total;
        d["kv_bytes"] = s.kv_bytes;
        d["kv_tokens"] = s.kv_tokens;
        d["kv_bits_per_element"] = s.kv_tokens > 0 ? nb::object(nb::float_(s.kv_bits_per_element)) : nb::none();
        d["kv_bytes_per_sequence"] = s.kv_bytes_per_sequence;
        return d;
      });
}

}  // namespace akvq::bind
