// Maps the engine's typed exceptions to Python: FormatError/InvalidArgument -> ValueError,
// IoError -> OSError, QueueFull -> _akvq.QueueFull (a RuntimeError), OutOfMemory -> MemoryError,
// Unavailable/Error -> RuntimeError.
#include <akvq/error.h>

#include <cstring>

#include "common.h"

namespace akvq::bind {

nb::str utf8_text(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw nb::python_error();
  return nb::steal<nb::str>(o);
}

namespace {

// An engine message may quote bytes of a file (a GGUF string that is not UTF-8): decoded with
// U+FFFD for those, so that the message, not a UnicodeDecodeError, reaches Python.
void set_error(PyObject* type, const char* what) {
  PyObject* msg = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "replace");
  if (!msg) return;  // MemoryError set
  PyErr_SetObject(type, msg);
  Py_DECREF(msg);
}

}  // namespace

void init_errors(nb::module_& m) {
  // akvq::QueueFull -> _akvq.QueueFull, a RuntimeError (a full request queue: retry later)
  static PyObject* queue_full = PyErr_NewExceptionWithDoc(
      "pyakvq._akvq.QueueFull", "A bounded request queue is full; nothing changed (retry later).",
      PyExc_RuntimeError, nullptr);
  m.attr("QueueFull") = nb::handle(queue_full);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const akvq::QueueFull& e) {
      set_error(queue_full, e.what());
    } catch (const akvq::FormatError& e) {
      set_error(PyExc_ValueError, e.what());
    } catch (const akvq::InvalidArgument& e) {
      set_error(PyExc_ValueError, e.what());
    } catch (const akvq::IoError& e) {
      set_error(PyExc_OSError, e.what());
    } catch (const akvq::OutOfMemory& e) {
      set_error(PyExc_MemoryError, e.what());
    } catch (const akvq::Error& e) {
      set_error(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace akvq::bind
