// CUDA backend glue: availability queries. The kernels live in ../../cuda/.
#pragma once

namespace akvq::cuda {

bool is_available();  // true when built with CUDA and a device is present
int device_count();
void require();       // throws akvq::Unavailable with the reason when !is_available()

}  // namespace akvq::cuda
