// The ranges of the public parameter structs (SessionParams, BatchParams) and their check.
#pragma once
#include <cstdint>
#include <string>

#include "akvq/error.h"

namespace akvq::limits {

constexpr int kMaxCtx = 1 << 20;  // tokens per sequence
constexpr int kMaxThreads = 512;
constexpr int kMaxBatch = 1 << 16;  // rows per forward pass
constexpr int kMaxParallel = 1024;  // sequences of a BatchGenerator
constexpr int kMaxQueue = 1 << 20;  // waiting requests of a BatchGenerator

// Throws InvalidArgument "[where] field = v is out of range [lo, hi]".
inline void check_range(const char* where, const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    throw InvalidArgument(std::string("[") + where + "] " + field + " = " + std::to_string(v) + " is out of range [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
}

}  // namespace akvq::limits
