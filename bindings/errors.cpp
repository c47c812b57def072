// Maps the engine's typed exceptions to Python: FormatError/InvalidArgument -> ValueError,
// IoError -> OSError, QueueFull -> _akvq.QueueFull (a RuntimeError), OutOfMemory -> MemoryError,
// Unavailable/Error -> RuntimeError.
#include <akvq/error.h>

#include "common.h"

namespace akvq::bind {

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
      PyErr_SetString(queue_full, e.what());
    } catch (const akvq::FormatError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const akvq::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const akvq::IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const akvq::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const akvq::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace akvq::bind
