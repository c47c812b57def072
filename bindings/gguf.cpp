// Bindings for the gguf area: _akvq.GGUFFile(path), a read-only view of a validated GGUF file.
// Parsing and dequantization run without the GIL; arrays returned to Python are copies.
#include <akvq/error.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/string.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include "common.h"
#include "gguf/gguf.h"
#include "ops/ops.h"

namespace akvq::bind {
namespace {

using gguf::ValueType;

struct PyGGUFFile {
  std::unique_ptr<gguf::File> f;
};

nb::object to_python(const gguf::Value& v) {
  switch (v.type) {
    case ValueType::U8:
    case ValueType::U16:
    case ValueType::U32:
    case ValueType::U64: return nb::steal(PyLong_FromUnsignedLongLong(v.u));
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64: return nb::steal(PyLong_FromLongLong(v.i));
    case ValueType::F32:
    case ValueType::F64: return nb::float_(v.f);
    case ValueType::BOOL: return nb::bool_(v.b);
    case ValueType::STRING: {
      // Invalid UTF-8 (possible in token lists) round-trips through surrogate escapes.
      PyObject* s = PyUnicode_DecodeUTF8(v.str.data(), static_cast<Py_ssize_t>(v.str.size()), "surrogateescape");
      if (!s) throw nb::python_error();
      return nb::steal(s);
    }
    case ValueType::ARRAY: {
      nb::list out;
      for (const gguf::Value& e : v.arr) out.append(to_python(e));
      return std::move(out);
    }
  }
  return nb::none();
}

template <class T>
nb::ndarray<nb::numpy, T> owned_array(T* data, size_t ndim, const size_t* shape) {
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  return nb::ndarray<nb::numpy, T>(data, ndim, shape, owner);
}

nb::object tensor_bytes(const PyGGUFFile& self, const std::string& name) {
  const TensorView& t = self.f->tensor(name);
  auto* buf = new uint8_t[t.nbytes];
  {
    nb::gil_scoped_release nogil;
    std::memcpy(buf, t.data, t.nbytes);
  }
  const size_t shape[1] = {t.nbytes};
  return nb::cast(owned_array(buf, 1, shape));
}

nb::object tensor_f32(const PyGGUFFile& self, const std::string& name) {
  const TensorView& t = self.f->tensor(name);
  const int64_t n = t.nelements();
  std::unique_ptr<float[]> buf(new float[static_cast<size_t>(n)]);
  {
    nb::gil_scoped_release nogil;
    for (int64_t r = 0; r < t.rows(); ++r) ops::dequantize_row(t.type, t.row(r), buf.get() + r * t.ne[0], t.ne[0]);
  }
  size_t shape[4];
  for (int d = 0; d < t.n_dims; ++d) shape[d] = static_cast<size_t>(t.ne[t.n_dims - 1 - d]);  // outermost first
  return nb::cast(owned_array(buf.release(), static_cast<size_t>(t.n_dims), shape));
}

nb::list tensor_list(const PyGGUFFile& self) {
  nb::list out;
  for (const TensorView& t : self.f->tensors()) {
    nb::list shape;
    for (int d = 0; d < t.n_dims; ++d) shape.append(t.ne[d]);
    out.append(
        nb::make_tuple(t.name, dtype_name(static_cast<uint32_t>(t.type)), nb::tuple(shape), self.f->tensor_offset(t)));
  }
  return out;
}

}  // namespace

void init_gguf(nb::module_& m) {
  nb::class_<PyGGUFFile>(m, "GGUFFile", "A memory-mapped, validated GGUF file (read-only).")
      .def(
          "__init__",
          [](PyGGUFFile* self, const std::filesystem::path& path) {
            std::unique_ptr<gguf::File> f;
            {
              nb::gil_scoped_release nogil;
              f = gguf::File::open(path.string());
            }
            new (self) PyGGUFFile{std::move(f)};
          },
          nb::arg("path"), "Maps and validates the file. Raises OSError (cannot open) or ValueError (malformed).")
      .def_prop_ro("path", [](const PyGGUFFile& s) { return s.f->path(); })
      .def_prop_ro("version", [](const PyGGUFFile& s) { return s.f->version(); })
      .def_prop_ro("alignment", [](const PyGGUFFile& s) { return s.f->alignment(); })
      .def_prop_ro("data_offset", [](const PyGGUFFile& s) { return s.f->data_offset(); })
      .def_prop_ro("file_size", [](const PyGGUFFile& s) { return s.f->file_size(); })
      .def(
          "keys",
          [](const PyGGUFFile& s) {
            nb::list out;
            for (const std::string& k : s.f->keys()) out.append(nb::str(k.data(), k.size()));
            return out;
          },
          "Metadata keys in file order.")
      .def(
          "get",
          [](const PyGGUFFile& s, const std::string& key, nb::object def) {
            const gguf::Value* v = s.f->find(key);
            return v ? to_python(*v) : def;
          },
          nb::arg("key"), nb::arg("default") = nb::none(),
          "Metadata value as int/float/bool/str/list (nested for nested arrays), or `default` when absent.")
      .def("__contains__", [](const PyGGUFFile& s, const std::string& key) { return s.f->has(key); })
      .def("tensors", &tensor_list,
           "List of (name, type name, shape innermost-first, offset relative to the data section).")
      .def("tensor_bytes", &tensor_bytes, nb::arg("name"), "Raw bytes of a tensor (numpy uint8 copy).")
      .def("tensor_f32", &tensor_f32, nb::arg("name"),
           "Tensor dequantized to float32, numpy shape outermost first (reversed GGUF dims).");
}

}  // namespace akvq::bind
