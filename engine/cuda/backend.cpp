// CUDA backend glue for builds with CUDA: queries the runtime (cudart linked statically, so a
// machine without a driver reports "no device" instead of failing to load).
#include "cuda/backend.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include <akvq/error.h>

#include "probe.cuh"

#ifndef AKVQ_CUDA_ARCHS
#define AKVQ_CUDA_ARCHS "unknown"
#endif

namespace akvq::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string status() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    if (driver == 0) return "no usable CUDA device: no NVIDIA driver found";
    auto ver = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
    return std::string("no usable CUDA device: ") + cudaGetErrorString(e) + " (driver supports CUDA " + ver(driver) +
           ", this build's runtime is " + ver(runtime) + ")";
  }
  if (n == 0) return "no CUDA device found";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    cudaGetLastError();
    return "CUDA device 0 cannot be queried";
  }
  char gib[32];
  std::snprintf(gib, sizeof gib, "%.1f", static_cast<double>(p.totalGlobalMem) / (1ull << 30));
  const std::string dev =
      std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " + gib + " GiB)";
  const cudaError_t k = akvq_cuda::kernels_loadable();
  if (k != cudaSuccess) {
    return "GPU 0: " + dev + " cannot run this build's kernels (built for CUDA architectures " AKVQ_CUDA_ARCHS "): " +
           cudaGetErrorString(k) + "; rebuild with CMAKE_CUDA_ARCHITECTURES=" + std::to_string(p.major) +
           std::to_string(p.minor);
  }
  return "GPU 0: " + dev;
}

bool is_available() {
  return device_count() > 0 && akvq_cuda::kernels_loadable() == cudaSuccess;
}

void require() {
  if (!is_available()) throw Unavailable("[cuda] " + status());
}

}  // namespace akvq::cuda
