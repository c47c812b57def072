// CUDA backend stub used when the engine is built without CUDA (AKVQ_CUDA=OFF, or AUTO without
// nvcc): reports unavailability and throws a clear error when asked for.
#include "cuda/backend.h"

#include <string>

#include <akvq/error.h>

namespace akvq::cuda {

bool is_available() {
  return false;
}

int device_count() {
  return 0;
}

std::string status() {
  return "this build of pyakvq has no CUDA backend (built with AKVQ_CUDA=OFF or without nvcc)";
}

void require() {
  throw Unavailable("[cuda] " + status());
}

}  // namespace akvq::cuda
