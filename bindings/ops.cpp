// Bindings for the ops area (placeholder until that area lands).
#include "common.h"

namespace akvq::bind {
void init_ops(nb::module_& m) { (void)m; }
}  // namespace akvq::bind
