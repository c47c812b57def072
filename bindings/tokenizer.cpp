// Bindings for the tokenizer area (placeholder until that area lands).
#include "common.h"

namespace akvq::bind {
void init_tokenizer(nb::module_& m) { (void)m; }
}  // namespace akvq::bind
