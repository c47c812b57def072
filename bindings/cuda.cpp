// CUDA availability for Python (pyakvq.cuda_available / cuda_status): never raises.
#include <nanobind/stl/string.h>

#include <string>

#include "common.h"
#include "cuda/backend.h"

namespace akvq::bind {

void init_cuda(nb::module_& m) {
  m.def(
      "cuda_available", [] { return cuda::is_available(); },
      "True when this build has the CUDA backend, a GPU is present and the build's kernels run on it.");
  m.def(
      "cuda_status", [] { return cuda::status(); },
      "One line: 'GPU 0: <name> (sm_XY, N GiB)', or why CUDA is not available.");
}

}  // namespace akvq::bind
