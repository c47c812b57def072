// kernels_loadable (probe.cuh): asks the runtime for a trivial kernel's attributes.
#include "probe.cuh"

namespace akvq_cuda {

namespace {
__global__ void probe_kernel(int* x) {
  if (x) *x = 1;
}
}  // namespace

cudaError_t kernels_loadable() {
  cudaFuncAttributes attr;
  const cudaError_t e = cudaFuncGetAttributes(&attr, probe_kernel);
  if (e != cudaSuccess) cudaGetLastError();  // not sticky: clear it
  return e;
}

}  // namespace akvq_cuda
