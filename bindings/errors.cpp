// Maps the engine's typed exceptions to Python: FormatError/InvalidArgument -> ValueError,
// IoError -> OSError, Unavailable/Error -> RuntimeError.
#include <akvq/error.h>

#include "common.h"

namespace akvq::bind {

void init_errors(nb::module_& m) {
  (void)m;
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const akvq::FormatError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const akvq::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const akvq::IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const akvq::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace akvq::bind
