// Q16X activation rows (ops/qblocks.h), checked against the layout's definition from the Q16 row
// of the same values: h / l bytes in the two-register order, the per-lane scales and the offset
// lanes, for every weight type that reads them, 8- and 16-bit levels, and rows whose last group
// misses blocks, blocks below the tiny threshold (d = 0) and values at exact halves of a level
// (round half to even); every byte written, whatever the buffer held. Both paths: the AVX-512 one
// where the CPU has it and the portable one.
// (The AVX-512 kernels read these rows; this check runs on every machine.)
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "cpu/isa.h"
#include "cpu/qgemm.h"
#include "ops/qblocks.h"

namespace {

using namespace akvq;

// Rows of the active ISA's path against the layout's definition from the Q16 row.
void check_rows_follow_the_layout(std::mt19937& rng) {
  std::normal_distribution<float> nd;
  for (DType w : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) {
    for (int qmax : {127, 32767}) {
      for (int64_t n : {32, 96, 576, 1536}) {
        SCOPED_TRACE(std::string("isa ") + cpu::isa_name(cpu::active_isa()) + " type " +
                     std::to_string(static_cast<int>(w)) + " qmax " + std::to_string(qmax) + " n " + std::to_string(n));
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = 3.0f * nd(rng);
        if (n >= 96) {
          for (int i = 32; i < 64; ++i) x[i] = 1e-31f * nd(rng);  // block 1: below kActTiny, d = 0
          // block 2: amax 2 * qmax (d = 2), and values at exact halves of a level: 2k + 1 -> k + 0.5
          x[64] = 2.0f * static_cast<float>(qmax);
          for (int i = 65; i < 96; ++i) x[i] = static_cast<float>(2 * (i - 80) + 1);
        }
        std::vector<uint8_t> q16(static_cast<size_t>(ops::act_q16_row_bytes(n)));
        cpu::quantize_row_q16(x.data(), q16.data(), n, qmax);
        std::vector<uint8_t> got(static_cast<size_t>(ops::act_q16x_row_bytes(n)), 0xAB);
        cpu::quantize_row_q16x(x.data(), got.data(), n, w, qmax);
        // every byte is written (the kernels' buffers are reused): the same row over zeros
        std::vector<uint8_t> over_zeros(got.size(), 0);
        cpu::quantize_row_q16x(x.data(), over_zeros.data(), n, w, qmax);
        ASSERT_EQ(got, over_zeros) << "bytes left from before the row";
        const int16_t* q = ops::act_q16_qs(q16.data());
        const float* d = ops::act_q16_d(q16.data(), n);
        const float* s = ops::act_q16_s(q16.data(), n);
        const int64_t nb = n / ops::kQK;
        for (int64_t g = 0; g * ops::kQ16XGroup < n; ++g) {
          const uint8_t* grp = got.data() + g * ops::kQ16XGroupBytes;
          for (int k = 0; k < 4; ++k) {
            const int64_t b = 4 * g + k;
            int32_t sum = 0;
            for (int i = 0; i < ops::kQK; ++i) {
              const int v = b < nb ? q[b * ops::kQK + i] : 0;
              sum += v;
              const int hi = qmax > 127 ? (v >> 8) : v, lo = qmax > 127 ? (v & 255) : 0;
              const int pos = (i < 16 ? 0 : 64) + 16 * k + i % 16;
              ASSERT_EQ(grp[pos], static_cast<uint8_t>(w == DType::Q8_0 ? hi + 128 : hi)) << "h, block " << b << " i " << i;
              ASSERT_EQ(grp[128 + pos], static_cast<uint8_t>(lo)) << "l, block " << b << " i " << i;
            }
            for (int j = 0; j < 4; ++j) {
              float dl;
              std::memcpy(&dl, grp + 256 + 4 * (4 * k + j), 4);
              EXPECT_EQ(dl, b < nb ? d[b] : 0.0f) << "d16 block " << b;
            }
            if (b >= nb) continue;
            if (w == DType::Q4_0) {
              int32_t off;
              std::memcpy(&off, grp + 320 + 16 * k, 4);
              EXPECT_EQ(off, -8 * sum) << "o16 block " << b;
            } else if (w == DType::Q4_1) {
              float off;
              std::memcpy(&off, grp + 320 + 16 * k, 4);
              EXPECT_EQ(off, s[b]) << "o16 block " << b;
            }
          }
        }
      }
    }
  }
}

TEST(ActQ16X, BytesFollowTheLayoutFromTheQ16Row) {
  std::mt19937 rng(7);
  struct Cap {  // restores the ISA cap when the test ends, even on failure
    ~Cap() { cpu::set_isa_cap(cpu::Isa::Avx512); }
  } restore;
  for (cpu::Isa cap : {cpu::Isa::Avx512, cpu::Isa::Avx2}) {
    cpu::set_isa_cap(cap);
    check_rows_follow_the_layout(rng);
  }
}

}  // namespace
