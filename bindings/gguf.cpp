// Bindings for the gguf area (placeholder until that area lands).
#include "common.h"

namespace akvq::bind {
void init_gguf(nb::module_& m) { (void)m; }
}  // namespace akvq::bind
