// Bindings for the public engine API: Model (weights + tokenizer), Session (KV cache + compute),
// Sampler, Generator (the engine's generation loop), TextStream. Thin: type conversion and GIL
// release only; every call that computes goes through EngineCall (safe interpreter exit).
#include <akvq/engine.h>
#include <akvq/error.h>
#include <akvq/generate.h>
#include <akvq/sampler.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstring>
#include <optional>

#include "common.h"
#include "engine_call.h"

namespace akvq::bind {

GenerateParams generate_params(int max_tokens, float temperature, int32_t top_k, float top_p, float min_p,
                               float repeat_penalty, int32_t repeat_last_n, std::optional<uint64_t> seed,
                               std::vector<std::string> stop, std::optional<int> logprobs) {
  GenerateParams p;
  p.max_tokens = max_tokens;
  p.sampling.temperature = temperature;
  p.sampling.top_k = top_k;
  p.sampling.top_p = top_p;
  p.sampling.min_p = min_p;
  p.sampling.repeat_penalty = repeat_penalty;
  p.sampling.repeat_last_n = repeat_last_n;
  p.sampling.seed = seed ? *seed : random_seed();
  p.stop = std::move(stop);
  p.logprobs = logprobs ? *logprobs : -1;
  return p;
}

nb::tuple step_tuple(const GenerateStep& st) {
  nb::object finish = nb::none();
  if (st.finish != FinishReason::None) finish = nb::str(finish_reason_name(st.finish));
  nb::object logprob = nb::none(), top = nb::none();
  if (!std::isnan(st.logprob)) {
    logprob = nb::float_(st.logprob);
    nb::list l;
    for (const auto& [id, lp] : st.top_logprobs) l.append(nb::make_tuple(id, lp));
    top = l;
  }
  return nb::make_tuple(st.id, nb::str(st.text.data(), st.text.size()), finish, logprob, top);
}

namespace {

using F32Array = nb::ndarray<nb::numpy, float>;

// Owns a float buffer and hands it to numpy without a second copy.
F32Array make_array(std::vector<float>&& v, std::initializer_list<size_t> shape) {
  auto* owner = new std::vector<float>(std::move(v));
  nb::capsule del(owner, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  return F32Array(owner->data(), shape, del);
}

nb::dict info_dict(const ModelInfo& i) {
  nb::dict d;
  // the path as Python's os functions decode file names (undecodable bytes as surrogates)
  PyObject* path = PyUnicode_DecodeFSDefaultAndSize(i.path.data(), static_cast<Py_ssize_t>(i.path.size()));
  if (!path) throw nb::python_error();
  d["path"] = nb::steal<nb::str>(path);
  d["arch"] = utf8_text(i.arch);
  d["name"] = utf8_text(i.name);
  d["n_vocab"] = i.n_vocab;
  d["n_ctx_train"] = i.n_ctx_train;
  d["n_embd"] = i.n_embd;
  d["n_layer"] = i.n_layer;
  d["n_head"] = i.n_head;
  d["n_head_kv"] = i.n_head_kv;
  d["head_dim"] = i.head_dim;
  d["n_ff"] = i.n_ff;
  d["rope_theta"] = i.rope_theta;
  d["rope_freq_scale"] = i.rope_freq_scale;
  d["rope_freqs"] = i.rope_freqs;
  d["rms_eps"] = i.rms_eps;
  d["tokenizer_model"] = utf8_text(i.tokenizer_model);
  d["tokenizer_pre"] = utf8_text(i.tokenizer_pre);
  d["chat_template"] = utf8_text(i.chat_template);
  d["bos"] = i.bos;
  d["eos"] = i.eos;
  d["unk"] = i.unk;
  d["pad"] = i.pad;
  d["add_bos"] = i.add_bos;
  d["file_type"] = i.file_type;
  d["n_params"] = i.n_params;
  d["act_bits"] = i.act_bits;
  d["packed_bytes"] = i.packed_bytes;
  d["device"] = utf8_text(i.device);
  d["device_bytes"] = i.device_bytes;
  d["device_note"] = utf8_text(i.device_note);
  return d;
}

TokenKind parse_kind(const std::string& k) {
  if (k == "text") return TokenKind::Text;
  if (k == "vision") return TokenKind::Vision;
  if (k == "generated") return TokenKind::Generated;
  throw InvalidArgument("token kind must be 'text', 'vision' or 'generated', got '" + k + "'");
}

// tokens by kind, indexed by TokenKind
nb::dict kinds_dict(const int64_t (&n)[3]) {
  nb::dict d;
  d["text"] = n[static_cast<int>(TokenKind::Text)];
  d["vision"] = n[static_cast<int>(TokenKind::Vision)];
  d["generated"] = n[static_cast<int>(TokenKind::Generated)];
  return d;
}

nb::dict summary_dict(const KvSummary& k) {
  nb::dict d;
  d["mode"] = k.mode;
  d["n_tokens"] = k.n_tokens;
  d["bytes"] = k.bytes;
  d["bytes_reserved"] = k.bytes_reserved;
  d["bits_per_element"] = k.bits_per_element;
  d["tsa_layers"] = k.tsa_layers;
  d["options"] = k.options;
  nb::list layers;
  for (const KvLayerStats& l : k.layers) {
    nb::list classes;
    for (const KvClassStats& c : l.classes) {
      nb::dict cd;
      cd["name"] = c.name;
      cd["tokens"] = c.tokens;
      cd["bytes"] = c.bytes;
      cd["kinds"] = kinds_dict(c.kinds);
      classes.append(cd);
    }
    nb::dict ld;
    ld["classes"] = classes;
    ld["pivots"] = l.pivots;
    ld["kinds"] = kinds_dict(l.kinds);
    layers.append(ld);
  }
  d["layers"] = layers;
  return d;
}

}  // namespace

void init_model(nb::module_& m) {
  nb::class_<Model>(m, "Model")
      .def_static(
          "load",
          [](const std::string& path, int act_bits, const std::string& device) {
            ModelParams p;
            p.act_bits = act_bits;
            p.device = device;
            return Model::load(path, p);
          },
          nb::arg("path"), nb::arg("act_bits") = 16, nb::arg("device") = "cpu",
          nb::call_guard<EngineCall>())
      .def_prop_ro("info", [](const Model& self) { return info_dict(self.info()); })
      .def("tokenize", &Model::tokenize, nb::arg("text"), nb::arg("add_special") = true,
           nb::arg("parse_special") = true, nb::call_guard<EngineCall>())
      .def(
          "detokenize_bytes",
          [](const Model& self, const std::vector<int32_t>& ids, bool render_special) {
            std::string s;
            {
              EngineCall r;
              s = self.detokenize(ids, render_special);
            }
            return nb::bytes(s.data(), s.size());
          },
          nb::arg("ids"), nb::arg("render_special") = false)
      .def(
          "piece",
          [](const Model& self, int32_t id, bool render_special) {
            std::string s = self.token_piece(id, render_special);
            return nb::bytes(s.data(), s.size());
          },
          nb::arg("id"), nb::arg("render_special") = false)
      .def("is_eog", &Model::is_eog, nb::arg("id"));

  nb::class_<Session>(m, "Session")
      .def(
          "__init__",
          [](Session* self, std::shared_ptr<Model> model, int n_ctx, int n_threads, const std::string& kv, int n_batch,
             const std::map<std::string, std::string>& kv_options) {
            SessionParams p;
            p.n_ctx = n_ctx;
            p.n_threads = n_threads;
            p.kv = kv;
            p.n_batch = n_batch;
            p.kv_options = kv_options;
            p.interrupt = check_python_signals;  // Ctrl-C during a long prompt
            EngineCall r;
            new (self) Session(std::move(model), p);
          },
          nb::arg("model"), nb::arg("n_ctx") = 4096, nb::arg("n_threads") = 0, nb::arg("kv") = "f16",
          nb::arg("n_batch") = 256, nb::arg("kv_options") = std::map<std::string, std::string>())
      .def_prop_ro("n_past", &Session::n_past)
      .def_prop_ro("n_ctx", [](const Session& s) { return s.params().n_ctx; })
      .def_prop_ro("n_threads", [](const Session& s) { return s.params().n_threads; })
      .def_prop_ro("tokens", &Session::tokens)
      .def("reset", &Session::reset)
      .def("truncate", &Session::truncate, nb::arg("n"))
      .def(
          "eval",
          [](Session& self, const std::vector<int32_t>& ids, const std::string& kind) {
            const TokenKind k = parse_kind(kind);
            const int n_vocab = self.model().info().n_vocab;
            std::vector<float> out(static_cast<size_t>(n_vocab));
            {
              EngineCall r;
              const float* l = self.eval(ids, k);
              std::memcpy(out.data(), l, out.size() * sizeof(float));
            }
            return make_array(std::move(out), {static_cast<size_t>(n_vocab)});
          },
          nb::arg("ids"), nb::arg("kind") = "text")
      .def(
          "eval_all",
          [](Session& self, const std::vector<int32_t>& ids, const std::string& kind) {
            const TokenKind k = parse_kind(kind);
            const size_t n_vocab = static_cast<size_t>(self.model().info().n_vocab);
            std::vector<float> out;
            {
              EngineCall r;
              out.resize(ids.size() * n_vocab);  // hundreds of MB for long inputs: cleared without the GIL
              self.eval_all(ids, out.data(), k);
            }
            return make_array(std::move(out), {ids.size(), n_vocab});
          },
          nb::arg("ids"), nb::arg("kind") = "text")
      .def("kv_summary", [](const Session& s) { return summary_dict(s.kv_summary()); });

  nb::class_<Sampler>(m, "Sampler")
      .def(
          "__init__",
          [](Sampler* self, float temperature, int top_k, float top_p, float min_p, float repeat_penalty,
             int repeat_last_n, uint64_t seed) {
            SamplingParams p;
            p.temperature = temperature;
            p.top_k = top_k;
            p.top_p = top_p;
            p.min_p = min_p;
            p.repeat_penalty = repeat_penalty;
            p.repeat_last_n = repeat_last_n;
            p.seed = seed;
            p.validate();
            new (self) Sampler(p);
          },
          nb::arg("temperature") = 0.8f, nb::arg("top_k") = 40, nb::arg("top_p") = 0.95f, nb::arg("min_p") = 0.0f,
          nb::arg("repeat_penalty") = 1.0f, nb::arg("repeat_last_n") = 64, nb::arg("seed") = 0)
      .def("reseed", &Sampler::reseed, nb::arg("seed"))
      .def(
          "sample",
          [](Sampler& self, nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu> logits,
             const std::vector<int32_t>& history) {
            EngineCall r;
            return self.sample(logits.data(), static_cast<int32_t>(logits.shape(0)), history);
          },
          nb::arg("logits"), nb::arg("history"))
      .def(
          "distribution",  // [(id, probability)] that sample() draws from, most likely first
          [](Sampler& self, nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu> logits,
             const std::vector<int32_t>& history) {
            EngineCall r;
            return self.distribution(logits.data(), static_cast<int32_t>(logits.shape(0)), history);
          },
          nb::arg("logits"), nb::arg("history"));

  nb::class_<TextStream>(m, "TextStream")
      .def(nb::init<std::vector<std::string>>(), nb::arg("stop") = std::vector<std::string>())
      .def(
          "feed", [](TextStream& self, nb::bytes b) { return self.feed(std::string(b.c_str(), b.size())); },
          nb::arg("data"))
      .def("finish", &TextStream::finish)
      .def_prop_ro("stopped", &TextStream::stopped);

  // Generator(session, prompt, ...): the engine's generation loop over a Session (kept alive by
  // the Generator). prompt: a SessionInput, or a list of token ids (converted, see vision.cpp).
  // next() -> step_tuple (common.h) or None when generation ended.
  // seed None: a fresh random seed.
  nb::class_<Generator>(m, "Generator")
      .def(
          "__init__",
          [](Generator* self, Session& session, SessionInput prompt, int max_tokens, float temperature,
             int32_t top_k, float top_p, float min_p, float repeat_penalty, int32_t repeat_last_n,
             std::optional<uint64_t> seed, std::vector<std::string> stop, std::optional<int> logprobs) {
            new (self) Generator(session, std::move(prompt),
                                 generate_params(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                                 repeat_last_n, seed, std::move(stop), logprobs));
          },
          nb::arg("session"), nb::arg("prompt"), nb::arg("max_tokens") = 128, nb::arg("temperature") = 0.8f,
          nb::arg("top_k") = 40, nb::arg("top_p") = 0.95f, nb::arg("min_p") = 0.0f, nb::arg("repeat_penalty") = 1.0f,
          nb::arg("repeat_last_n") = 64, nb::arg("seed") = nb::none(), nb::arg("stop") = std::vector<std::string>(),
          nb::arg("logprobs") = nb::none(), nb::keep_alive<1, 2>())
      .def("start", &Generator::start, nb::call_guard<EngineCall>())
      .def("next",
           [](Generator& self) -> nb::object {
             GenerateStep st;
             bool ok = false;
             {
               EngineCall r;
               ok = self.next(st);
             }
             if (!ok) return nb::none();
             return step_tuple(st);
           })
      .def_prop_ro("done", &Generator::done)
      .def_prop_ro("finish_reason",
                   [](const Generator& g) -> nb::object {
                     if (g.finish_reason() == FinishReason::None) return nb::none();
                     return nb::str(finish_reason_name(g.finish_reason()));
                   })
      .def_prop_ro("n_prompt", &Generator::n_prompt)
      .def_prop_ro("n_reused", &Generator::n_reused)
      .def_prop_ro("n_generated", &Generator::n_generated)
      .def_prop_ro("seed", &Generator::seed)
      .def_prop_ro("timings", [](const Generator& g) {
        nb::dict d;
        d["prompt_ms"] = g.timings().prompt_ms;
        d["gen_ms"] = g.timings().gen_ms;
        return d;
      });

  main_thread_ident() = nb::cast<unsigned long>(nb::module_::import_("threading").attr("main_thread")().attr("ident"));
  // Safe interpreter exit while other threads are inside engine calls (see engine_call.h).
  m.def(
      "_shutdown",
      [](double max_wait_s) {
        nb::object threading = nb::module_::import_("threading");
        nb::object main = threading.attr("main_thread")();
        bool others_alive = false;
        for (nb::handle t : threading.attr("enumerate")()) {
          if (!t.is(main) && nb::cast<bool>(t.attr("is_alive")())) others_alive = true;
        }
        engine_shutdown(others_alive, max_wait_s);
      },
      nb::arg("max_wait_s") = 30.0);
  m.def("_shutting_down", []() {
    EngineCallState& s = engine_call_state();
    std::lock_guard<std::mutex> lk(s.m);
    return s.shutdown;
  });
  nb::module_::import_("atexit").attr("register")(m.attr("_shutdown"));
  engine_call_fork_handlers();
}

}  // namespace akvq::bind
