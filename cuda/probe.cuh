// Whether this build's kernels can run on the current device (an image for its architecture or
// PTX it can compile), without launching anything.
#pragma once
#include <cuda_runtime_api.h>

namespace akvq_cuda {

// cudaSuccess, or the runtime's reason (cudaErrorNoKernelImageForDevice for a GPU older than the
// build's architectures).
cudaError_t kernels_loadable();

}  // namespace akvq_cuda
