// GPU test helper: device copies of the host spans of tests/cpp/cuda_spans.h (kernel arguments
// with device pointers), and a skip when no usable device is present.
#pragma once
#include <gtest/gtest.h>

#include <vector>

#include "cuda/backend.h"
#include "cuda/device_buffer.h"
#include "cuda_spans.h"

#define AKVQ_REQUIRE_GPU()                                                     \
  do {                                                                         \
    if (!::akvq::cuda::is_available()) GTEST_SKIP() << ::akvq::cuda::status(); \
  } while (0)

namespace akvq::test {

struct DeviceSpans {
  std::vector<cuda::DeviceBuffer> bufs;
  akvq_cuda::AttendArgs args;  // device pointers
};

inline DeviceSpans upload_spans(const HostSpans& hs) {
  DeviceSpans d;
  d.args = hs.args;
  for (int s = 0; s < hs.args.n_spans; ++s) {
    akvq_cuda::AttendSpan& sp = d.args.spans[s];
    d.bufs.push_back(cuda::DeviceBuffer::from(hs.k[s]));
    sp.k = d.bufs.back().as<uint8_t>();
    d.bufs.push_back(cuda::DeviceBuffer::from(hs.v[s]));
    sp.v = d.bufs.back().as<uint8_t>();
    d.bufs.push_back(cuda::DeviceBuffer::from(hs.kl[s]));
    sp.k_levels = hs.kl[s].empty() ? nullptr : d.bufs.back().as<float>();
    d.bufs.push_back(cuda::DeviceBuffer::from(hs.vl[s]));
    sp.v_levels = hs.vl[s].empty() ? nullptr : d.bufs.back().as<float>();
  }
  return d;
}

}  // namespace akvq::test
