// Read-bandwidth probe: a buffer far larger than the last-level cache, summed in 8 MiB chunks that
// the pool hands out dynamically, so every thread streams at the same time until the end.
// The sums are checked against the values written, which also keeps the loads from being elided.
#include "cpu/bandwidth.h"

#include <akvq/error.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "cpu/simd.h"

namespace akvq::cpu {

namespace {

constexpr size_t kLine = 64;               // bytes per cache line, the buffer's alignment
constexpr size_t kChunk = size_t(8) << 20;  // bytes per task
constexpr size_t kMinBytes = size_t(1) << 20;

struct AlignedFree {
  void operator()(uint64_t* p) const { ::operator delete[](p, std::align_val_t(kLine)); }
};

// Sum of n 64-bit words at p (n a multiple of 8: one cache line per step).
uint64_t sum_words(const uint64_t* p, size_t n) {
#if defined(AKVQ_AVX2)
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {  // two cache lines per iteration, four independent adds
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  for (; i + 4 <= n; i += 4) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
#else
  uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent lanes: the compiler vectorizes this
  for (size_t i = 0; i < n; i += 8) {
    for (size_t k = 0; k < 8; ++k) acc[k] += p[i + k];
  }
  uint64_t s = 0;
  for (uint64_t v : acc) s += v;
  return s;
#endif
}

}  // namespace

double read_bandwidth_gbs(ThreadPool& pool, size_t bytes, int reps) {
  if (bytes < kMinBytes) {
    throw InvalidArgument("[bandwidth] probe size " + std::to_string(bytes) +
                          " bytes is below the minimum of 1 MiB");
  }
  if (reps < 1) throw InvalidArgument("[bandwidth] reps must be >= 1, got " + std::to_string(reps));
  bytes -= bytes % kLine;
  const size_t n_words = bytes / sizeof(uint64_t);
  const size_t chunk_words = kChunk / sizeof(uint64_t);
  const int n_tasks = static_cast<int>((n_words + chunk_words - 1) / chunk_words);
  std::unique_ptr<uint64_t[], AlignedFree> buf(
      static_cast<uint64_t*>(::operator new[](bytes, std::align_val_t(kLine))));
  uint64_t* data = buf.get();

  // Written once, in parallel (pages land near the threads that touch them): word i holds i & 255.
  auto chunk_range = [&](int task) {
    const size_t lo = static_cast<size_t>(task) * chunk_words;
    return std::make_pair(lo, std::min(n_words, lo + chunk_words));
  };
  pool.run(n_tasks, [&](int task, int) {
    const auto [lo, hi] = chunk_range(task);
    for (size_t i = lo; i < hi; ++i) data[i] = i & 255;
  });
  // Expected total: full periods of 0..255 sum to 32640 each, plus the partial tail.
  const uint64_t tail = n_words % 256;
  const uint64_t expect = (n_words / 256) * 32640 + (tail > 0 ? tail * (tail - 1) / 2 : 0);

  std::vector<uint64_t> part(static_cast<size_t>(n_tasks));
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run(n_tasks, [&](int task, int) {
      const auto [lo, hi] = chunk_range(task);
      part[static_cast<size_t>(task)] = sum_words(data + lo, hi - lo);
    });
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t total = 0;
    for (uint64_t v : part) total += v;
    if (total != expect) {
      throw Error("[bandwidth] probe read back " + std::to_string(total) + ", expected " +
                  std::to_string(expect));
    }
    if (sec > 0) best = std::max(best, static_cast<double>(bytes) / sec / 1e9);
  }
  return best;
}

}  // namespace akvq::cpu
