// CUDA backend stub used when the engine is built without CUDA (AKVQ_CUDA=OFF, or no nvcc, or
// no kernels yet): reports unavailability and throws a clear error when asked for.
#include "cuda/backend.h"

#include <akvq/error.h>

namespace akvq::cuda {

bool is_available() { return false; }

int device_count() { return 0; }

void require() {
  throw Unavailable("[cuda] this build of pyakvq has no CUDA backend (built with AKVQ_CUDA=OFF or without nvcc)");
}

}  // namespace akvq::cuda
