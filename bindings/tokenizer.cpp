// Bindings for the tokenizer area: _akvq.Tokenizer (from a GGUF file's tokenizer.ggml.* keys).
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "common.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace akvq::bind {

namespace {

// UTF-8 bytes -> str, invalid sequences replaced with U+FFFD.
nb::str utf8_replace(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw nb::python_error();
  return nb::steal<nb::str>(o);
}

}  // namespace

void init_tokenizer(nb::module_& m) {
  nb::class_<Tokenizer>(m, "Tokenizer", "Tokenizer built from a GGUF vocabulary (gpt2 BPE or llama SentencePiece).")
      .def_static(
          "from_file",
          [](const std::string& path) {
            nb::gil_scoped_release nogil;
            auto f = gguf::File::open(path);
            return Tokenizer::from_gguf(*f);
          },
          nb::arg("path"), "Reads the tokenizer.ggml.* keys of a GGUF file.")
      .def(
          "encode",
          [](const Tokenizer& t, const std::string& text, bool add_special, bool parse_special) {
            nb::gil_scoped_release nogil;
            return t.encode(text, add_special, parse_special);
          },
          nb::arg("text"), nb::arg("add_special") = true, nb::arg("parse_special") = true,
          "Token ids of `text`; add_special adds BOS/EOS as the vocabulary says, parse_special turns "
          "control-token text such as '<|im_start|>' into that token.")
      .def(
          "decode",
          [](const Tokenizer& t, const std::vector<int32_t>& ids, bool render_special) {
            std::string s;
            {
              nb::gil_scoped_release nogil;
              s = t.decode(ids, render_special);
            }
            return utf8_replace(s);
          },
          nb::arg("ids"), nb::arg("render_special") = false, "Text of the ids (invalid UTF-8 replaced with U+FFFD).")
      .def(
          "piece",
          [](const Tokenizer& t, int32_t id, bool render_special) {
            const std::string s = t.piece(id, render_special);
            return nb::bytes(s.data(), s.size());
          },
          nb::arg("id"), nb::arg("render_special") = false, "Bytes of one token (may be partial UTF-8).")
      .def("is_eog", &Tokenizer::is_eog, nb::arg("id"), "True for end-of-generation tokens (EOS, end of turn).")
      .def("text", &Tokenizer::text, nb::arg("id"), "Raw vocabulary string of a token.")
      .def(
          "type", [](const Tokenizer& t, int32_t id) { return static_cast<int>(t.type(id)); }, nb::arg("id"),
          "Token type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).")
      .def_prop_ro("n_vocab", &Tokenizer::n_vocab)
      .def_prop_ro("bos", &Tokenizer::bos)
      .def_prop_ro("eos", &Tokenizer::eos)
      .def_prop_ro("eot", &Tokenizer::eot)
      .def_prop_ro("add_bos", &Tokenizer::add_bos);
}

}  // namespace akvq::bind
