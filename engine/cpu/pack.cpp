// Weight layouts made at load (cpu/qgemm.h: Packing): the byte rearrangement (plain C++, once per
// weight) and the choice of layout for the active kernels.
#include <akvq/error.h>

#include <cstring>
#include <string>

#include "cpu/isa.h"
#include "cpu/qgemm.h"
#include "ops/qblocks.h"

namespace akvq::cpu {

namespace {

struct G4Facts {
  int64_t block_bytes;  // bytes of one file block
  int scale_bytes;      // fp16 scales at the block start (d; Q4_1: d, m)
  int qs_bytes;         // quant bytes per block
};

bool g4_facts(DType t, G4Facts& f) {
  switch (t) {
    case DType::Q4_0: f = {sizeof(ops::BlockQ4_0), 2, 16}; return true;
    case DType::Q4_1: f = {sizeof(ops::BlockQ4_1), 4, 16}; return true;
    case DType::Q8_0: f = {sizeof(ops::BlockQ8_0), 2, 32}; return true;
    default: return false;
  }
}

// One row: full groups of 4 blocks regrouped, the tail copied.
void pack_row_g4(const G4Facts& f, const uint8_t* src, uint8_t* dst, int64_t nb) {
  const int64_t n_full = nb / 4;
  for (int64_t g = 0; g < n_full; ++g) {
    const uint8_t* s = src + 4 * g * f.block_bytes;
    uint8_t* d = dst + 4 * g * f.block_bytes;
    for (int k = 0; k < 4; ++k) {
      const uint8_t* b = s + k * f.block_bytes;
      std::memcpy(d + 2 * k, b, 2);                                  // d[k]
      if (f.scale_bytes == 4) std::memcpy(d + 8 + 2 * k, b + 2, 2);  // m[k]
    }
    uint8_t* q = d + 4 * f.scale_bytes;  // after 8 (Q4_1: 16) bytes of scales
    for (int k = 0; k < 4; ++k) {
      const uint8_t* qs = s + k * f.block_bytes + f.scale_bytes;
      if (f.qs_bytes == 16) {
        std::memcpy(q + 16 * k, qs, 16);
      } else {
        std::memcpy(q + 16 * k, qs, 16);
        std::memcpy(q + 64 + 16 * k, qs + 16, 16);
      }
    }
  }
  std::memcpy(dst + 4 * n_full * f.block_bytes, src + 4 * n_full * f.block_bytes,
              static_cast<size_t>((nb - 4 * n_full) * f.block_bytes));
}

}  // namespace

uint8_t preferred_packing(DType t) {
  if (active_isa() != Isa::Avx512) return kPackNone;
  return simd_kernels_q32_avx512_g4(t, 16) ? kPackG4 : kPackNone;
}

const TileKernels* simd_kernels_packed(DType t, uint8_t packing, int act_bits) {
  if (packing == kPackG4 && active_isa() == Isa::Avx512) return simd_kernels_q32_avx512_g4(t, act_bits);
  return nullptr;
}

void pack_rows(DType t, uint8_t packing, const uint8_t* src, uint8_t* dst, int64_t n_rows, int64_t n_in) {
  G4Facts f;
  if (packing != kPackG4 || !g4_facts(t, f)) {
    throw InvalidArgument("[ops] no weight layout " + std::to_string(packing) + " for type " +
                          dtype_name(static_cast<uint32_t>(t)));
  }
  const int64_t nb = n_in / ops::kQK;
  const size_t rb = static_cast<size_t>(nb * f.block_bytes);
  for (int64_t r = 0; r < n_rows; ++r) pack_row_g4(f, src + r * rb, dst + r * rb, nb);
}

}  // namespace akvq::cpu
