// Bindings for the sampling area (placeholder until that area lands).
#include "common.h"

namespace akvq::bind {
void init_sampling(nb::module_& m) { (void)m; }
}  // namespace akvq::bind
