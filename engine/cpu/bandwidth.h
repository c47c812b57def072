// Memory read bandwidth probe (STREAM-like "sum" kernel): how many bytes per second the pool's
// threads can pull from DRAM together. Benchmarks divide the bytes of weights a decode step reads
// by this figure to tell how close a kernel is to the memory limit.
#pragma once
#include <cstddef>

#include "cpu/thread_pool.h"

namespace akvq::cpu {

// Default probe size: 1 GiB, well above the last-level cache of the machines we run on.
constexpr size_t kBandwidthProbeBytes = size_t(1) << 30;

// Allocates `bytes` (rounded down to a multiple of 64), writes it once, then times `reps` passes
// in which the pool's threads sum disjoint chunks of it with the widest loads compiled in.
// Returns the best pass in GB/s (1e9 bytes per second).
// Throws InvalidArgument if bytes < 1 MiB or reps < 1; std::bad_alloc if the buffer cannot be
// allocated; Error if the sums read back do not match what was written (a broken probe).
double read_bandwidth_gbs(ThreadPool& pool, size_t bytes = kBandwidthProbeBytes, int reps = 3);

}  // namespace akvq::cpu
