// Bindings for the vision side: VisionModel (CLIP tower + projector), SessionInput (token ids and
// embedding rows with a kind each) and the Session calls that take it. Thin: type conversion and
// GIL release only; every call that computes goes through EngineCall.
#include <akvq/engine.h>
#include <akvq/error.h>
#include <akvq/vision.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <string>

#include "common.h"
#include "engine_call.h"

namespace akvq::bind {

namespace {

using F32Array = nb::ndarray<nb::numpy, float>;
using PixelArray = nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;
using RowsArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;

F32Array make_array(std::vector<float>&& v, std::initializer_list<size_t> shape) {
  auto* owner = new std::vector<float>(std::move(v));
  nb::capsule del(owner, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  return F32Array(owner->data(), shape, del);
}

TokenKind kind_of(const std::string& k) {
  if (k == "text") return TokenKind::Text;
  if (k == "vision") return TokenKind::Vision;
  if (k == "generated") return TokenKind::Generated;
  throw InvalidArgument("token kind must be 'text', 'vision' or 'generated', got '" + k + "'");
}

const char* kind_name(TokenKind k) {
  switch (k) {
    case TokenKind::Vision: return "vision";
    case TokenKind::Generated: return "generated";
    default: return "text";
  }
}

std::vector<std::string> kind_names(const std::vector<TokenKind>& kinds) {
  std::vector<std::string> out;
  out.reserve(kinds.size());
  for (TokenKind k : kinds) out.emplace_back(kind_name(k));
  return out;
}

nb::dict vision_info(const VisionInfo& i) {
  nb::dict d;
  d["path"] = i.path;
  d["projector_type"] = i.projector_type;
  d["image_size"] = i.image_size;
  d["patch_size"] = i.patch_size;
  d["n_patches"] = i.n_patches;
  d["n_tokens_per_image"] = i.n_tokens_per_image;
  d["n_embd_vision"] = i.n_embd_vision;
  d["n_embd"] = i.n_embd;
  d["n_layer"] = i.n_layer;
  d["feature_layer"] = i.feature_layer;
  d["feature_layers"] = i.feature_layers;
  d["n_embd_features"] = i.n_embd_features;
  d["n_head"] = i.n_head;
  d["n_ff"] = i.n_ff;
  d["eps"] = i.eps;
  d["activation"] = i.activation;
  d["projector_activation"] = i.projector_activation;
  d["select_strategy"] = i.select_strategy;
  d["image_mean"] = nb::make_tuple(i.image_mean[0], i.image_mean[1], i.image_mean[2]);
  d["image_std"] = nb::make_tuple(i.image_std[0], i.image_std[1], i.image_std[2]);
  d["pad_mode"] = i.pad_mode;
  d["image_token_id"] = i.image_token_id;
  d["legacy_ffn_names"] = i.legacy_ffn_names;
  d["packed_bytes"] = i.packed_bytes;
  return d;
}

// Checks pixels [n, 3, S, S] against the model and runs fn(ptr, n) without the GIL.
template <class Fn>
F32Array encode_call(const VisionModel& self, const PixelArray& pixels, size_t width, const Fn& fn) {
  const VisionInfo& i = self.info();
  const size_t s = static_cast<size_t>(i.image_size);
  if (pixels.shape(1) != 3 || pixels.shape(2) != s || pixels.shape(3) != s) {
    throw InvalidArgument("[vision] encode: pixels must have shape [n, 3, " + std::to_string(s) + ", " +
                          std::to_string(s) + "], got [" + std::to_string(pixels.shape(0)) + ", " +
                          std::to_string(pixels.shape(1)) + ", " + std::to_string(pixels.shape(2)) + ", " +
                          std::to_string(pixels.shape(3)) + "]");
  }
  const size_t n = pixels.shape(0);
  if (n < 1 || n > (1u << 16)) throw InvalidArgument("[vision] encode: " + std::to_string(n) + " images");
  std::vector<float> out;
  {
    EngineCall r;
    out = fn(pixels.data(), static_cast<int>(n));
  }
  return make_array(std::move(out), {n, static_cast<size_t>(i.n_tokens_per_image), width});
}

}  // namespace

void init_vision(nb::module_& m) {
  nb::class_<VisionModel>(m, "VisionModel")
      .def_static(
          "load", [](const std::string& path) { return VisionModel::load(path); }, nb::arg("path"),
          nb::call_guard<EngineCall>())
      .def_static(
          "from_model", [](std::shared_ptr<Model> model) { return VisionModel::from_model(std::move(model)); },
          nb::arg("model"), nb::call_guard<EngineCall>())
      .def_prop_ro("info", [](const VisionModel& self) { return vision_info(self.info()); })
      .def("check_compatible", &VisionModel::check_compatible, nb::arg("model"))
      .def(
          "encode",
          [](const VisionModel& self, PixelArray pixels, int n_threads) {
            return encode_call(self, pixels, static_cast<size_t>(self.info().n_embd),
                               [&](const float* p, int n) { return self.encode(p, n, n_threads); });
          },
          nb::arg("pixels"), nb::arg("n_threads") = 0)
      .def(
          "encode_features",
          [](const VisionModel& self, PixelArray pixels, int n_threads) {
            return encode_call(self, pixels, static_cast<size_t>(self.info().n_embd_features),
                               [&](const float* p, int n) { return self.encode_features(p, n, n_threads); });
          },
          nb::arg("pixels"), nb::arg("n_threads") = 0);

  nb::class_<SessionInput>(m, "SessionInput")
      .def(nb::init<>())
      // a list of token ids converts implicitly (e.g. the prompt of a Generator)
      .def(nb::init_implicit<const std::vector<int32_t>&>(), nb::arg("ids"))
      .def(
          "add_tokens",
          [](SessionInput& self, const std::vector<int32_t>& ids, const std::string& kind) {
            self.add_tokens(ids, kind_of(kind));
          },
          nb::arg("ids"), nb::arg("kind") = "text")
      .def(
          "add_embeddings",
          [](SessionInput& self, RowsArray rows, const std::string& kind, uint64_t content_id, int32_t placeholder) {
            if (rows.ndim() < 1 || rows.size() == 0) throw InvalidArgument("[input] add_embeddings: empty rows");
            const size_t width = rows.shape(rows.ndim() - 1);
            const size_t n = rows.size() / width;  // every leading dimension counts rows
            self.add_embeddings(rows.data(), static_cast<int>(n), static_cast<int>(width), kind_of(kind), content_id,
                                placeholder);
          },
          nb::arg("rows"), nb::arg("kind") = "vision", nb::arg("content_id") = 0,
          nb::arg("placeholder") = kEmbeddingRowId)
      .def("__len__", &SessionInput::size)
      .def_prop_ro("n_embd", &SessionInput::n_embd)
      .def_prop_ro("ids", &SessionInput::ids)
      .def_prop_ro("kinds", [](const SessionInput& s) { return kind_names(s.kinds()); })
      .def_prop_ro("hashes", &SessionInput::hashes);

  // Session calls on mixed rows (the Session class is registered by init_model).
  nb::object session = nb::borrow(nb::type<Session>());
  session.attr("eval_rows") = nb::cpp_function(
      [](Session& self, const SessionInput& input) {
        const size_t n_vocab = static_cast<size_t>(self.model().info().n_vocab);
        std::vector<float> out(n_vocab);
        {
          EngineCall r;
          const float* l = self.eval_rows(input);
          std::memcpy(out.data(), l, n_vocab * sizeof(float));
        }
        return make_array(std::move(out), {n_vocab});
      },
      nb::is_method(), nb::arg("input"), nb::name("eval_rows"));
  session.attr("eval_all_rows") = nb::cpp_function(
      [](Session& self, const SessionInput& input) {
        const size_t n_vocab = static_cast<size_t>(self.model().info().n_vocab);
        std::vector<float> out(input.size() * n_vocab);
        {
          EngineCall r;
          self.eval_all_rows(input, out.data());
        }
        return make_array(std::move(out), {input.size(), n_vocab});
      },
      nb::is_method(), nb::arg("input"), nb::name("eval_all_rows"));
  session.attr("eval_prompt_rows") = nb::cpp_function(
      [](Session& self, const SessionInput& input) {
        const size_t n_vocab = static_cast<size_t>(self.model().info().n_vocab);
        std::vector<float> out(n_vocab);
        int n_reused = 0;
        {
          EngineCall r;
          const float* l = self.eval_prompt_rows(input, &n_reused);
          std::memcpy(out.data(), l, n_vocab * sizeof(float));
        }
        return std::make_pair(make_array(std::move(out), {n_vocab}), n_reused);
      },
      nb::is_method(), nb::arg("input"), nb::name("eval_prompt_rows"));
  nb::object property = nb::module_::import_("builtins").attr("property");
  session.attr("kinds") = property(nb::cpp_function([](const Session& self) { return kind_names(self.kinds()); },
                                                    nb::is_method(), nb::name("kinds")));
  session.attr("row_hashes") = property(
      nb::cpp_function([](const Session& self) { return self.row_hashes(); }, nb::is_method(), nb::name("row_hashes")));
}

}  // namespace akvq::bind
