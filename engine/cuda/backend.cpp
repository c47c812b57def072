// CUDA backend glue for builds with CUDA: queries the runtime.
#include "cuda/backend.h"

#include <cuda_runtime.h>

#include <string>

#include <akvq/error.h>

namespace akvq::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

bool is_available() { return device_count() > 0; }

void require() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) throw Unavailable(std::string("[cuda] no usable CUDA device: ") + cudaGetErrorString(e));
  if (n == 0) throw Unavailable("[cuda] no CUDA device found");
}

}  // namespace akvq::cuda
