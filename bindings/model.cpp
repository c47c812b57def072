// Bindings for the model area (placeholder until that area lands).
#include "common.h"

namespace akvq::bind {
void init_model(nb::module_& m) { (void)m; }
}  // namespace akvq::bind
