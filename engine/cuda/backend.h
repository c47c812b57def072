// CUDA backend glue: availability queries. The kernels live in ../../cuda/; builds without CUDA
// link stub.cpp instead (nothing available, clear errors, never an exception from the queries).
#pragma once
#include <string>

namespace akvq::cuda {

bool is_available();  // built with CUDA, a device present, and the build's kernels run on device 0
int device_count();   // devices the runtime sees (0 without CUDA or a driver)
// One line: "GPU 0: <name> (sm_XY, N GiB)" when available, else why not (no backend in this build,
// no device or driver, a GPU older than the build's architectures).
std::string status();
void require();  // throws akvq::Unavailable with status() when !is_available()

}  // namespace akvq::cuda
