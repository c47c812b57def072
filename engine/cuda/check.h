// The one checking macro for CUDA runtime calls (CUDA builds only): a failed call throws
// akvq::OutOfMemory for allocation failures and akvq::Error otherwise, naming the call, the file
// and line, and the runtime's message. Library code never ends the process on a CUDA error.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include <akvq/error.h>

namespace akvq::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  std::string msg = std::string("[cuda] ") + call + " failed at " + file + ":" + std::to_string(line) + ": " +
                    cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  if (e == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      msg +=
          "; device memory free " + std::to_string(free_b >> 20) + " MiB of " + std::to_string(total_b >> 20) + " MiB";
    }
    cudaGetLastError();
    throw OutOfMemory(msg);
  }
  cudaGetLastError();
  throw Error(msg);
}

}  // namespace akvq::cuda

#define AKVQ_CUDA_CHECK(call)                                                                                     \
  do {                                                                                                            \
    const cudaError_t akvq_cuda_err_ = (call);                                                                    \
    if (akvq_cuda_err_ != cudaSuccess) ::akvq::cuda::throw_cuda_error(akvq_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)
