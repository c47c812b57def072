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

// R8 (n = 8, piece 2), R8B (n = 8, piece 4) and R16B (n = 16, piece 4): group g of rows
// n g .. n g + n - 1, block b at (g * nb + b) * n * block_bytes: the n scale fields d (Q4_1: then
// the n m), then chunk i (the piece-byte pieces i of the rows' quants, row by row).
void pack_rows_interleaved(const G4Facts& f, int n, int piece, const uint8_t* src, uint8_t* dst, int64_t n_rows,
                           int64_t nb) {
  const int64_t rb = nb * f.block_bytes;
  for (int64_t g = 0; g < n_rows / n; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* d = dst + (g * nb + b) * n * f.block_bytes;
      for (int r = 0; r < n; ++r) {
        const uint8_t* blk = src + (n * g + r) * rb + b * f.block_bytes;
        std::memcpy(d + 2 * r, blk, 2);                                     // d
        if (f.scale_bytes == 4) std::memcpy(d + 2 * n + 2 * r, blk + 2, 2);  // m
        const uint8_t* qs = blk + f.scale_bytes;
        uint8_t* q = d + n * f.scale_bytes;
        for (int i = 0; i < f.qs_bytes / piece; ++i) std::memcpy(q + n * piece * i + piece * r, qs + piece * i, piece);
      }
    }
  }
}

// R8B (n = 8) and R16B (n = 16) for Q4_K: group g of rows n g .. n g + n - 1, super-block b at
// (g * nb + b) * n * 144 bytes (cpu/qgemm.h): d[n], dmin[n], the 6-bit scales and mins of the n
// rows ([8 j][n r], index p = n j + r) re-split as A, B, H (4n bytes each: entry p pairs with
// p + 4n), then the quants in 4-byte pieces.
void pack_rows_q4k_interleaved(int n, const uint8_t* src, uint8_t* dst, int64_t n_rows, int64_t nb) {
  const int64_t rb = nb * static_cast<int64_t>(sizeof(ops::BlockQ4_K));
  for (int64_t g = 0; g < n_rows / n; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* d = dst + (g * nb + b) * n * static_cast<int64_t>(sizeof(ops::BlockQ4_K));
      uint8_t sc[128], mn[128];  // [8 j][n r]
      for (int r = 0; r < n; ++r) {
        const auto* blk = reinterpret_cast<const ops::BlockQ4_K*>(src + (n * g + r) * rb) + b;
        std::memcpy(d + 2 * r, &blk->d, 2);
        std::memcpy(d + 2 * n + 2 * r, &blk->dmin, 2);
        uint64_t sc8, mn8;
        ops::q4k_scales_mins(blk->scales, sc8, mn8);
        for (int j = 0; j < 8; ++j) {
          sc[n * j + r] = static_cast<uint8_t>(sc8 >> (8 * j));
          mn[n * j + r] = static_cast<uint8_t>(mn8 >> (8 * j));
        }
        for (int c = 0; c < 32; ++c) std::memcpy(d + 16 * n + 4 * n * c + 4 * r, blk->qs + 4 * c, 4);
      }
      const int h = 4 * n;  // A, B, H entries
      for (int p = 0; p < h; ++p) {
        d[h + p] = static_cast<uint8_t>((sc[p] & 15) | (sc[p + h] & 15) << 4);      // A
        d[2 * h + p] = static_cast<uint8_t>((mn[p] & 15) | (mn[p + h] & 15) << 4);  // B
        d[3 * h + p] = static_cast<uint8_t>(sc[p] >> 4 | (sc[p + h] >> 4) << 2 | (mn[p] >> 4) << 4 |  // H
                                            (mn[p + h] >> 4) << 6);
      }
    }
  }
}

// R16B for Q6_K: group g of rows 16g .. 16g + 15, super-block b at (g * nb + b) * 16 * 210 bytes
// (cpu/qgemm.h): d[16], the int8 scales as [16 j][16 r], then ql and qh in 4-byte pieces.
void pack_rows_q6k_r16b(const uint8_t* src, uint8_t* dst, int64_t n_rows, int64_t nb) {
  constexpr int n = 16;
  const int64_t rb = nb * static_cast<int64_t>(sizeof(ops::BlockQ6_K));
  for (int64_t g = 0; g < n_rows / n; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* d = dst + (g * nb + b) * n * static_cast<int64_t>(sizeof(ops::BlockQ6_K));
      for (int r = 0; r < n; ++r) {
        const auto* blk = reinterpret_cast<const ops::BlockQ6_K*>(src + (n * g + r) * rb) + b;
        std::memcpy(d + 2 * r, &blk->d, 2);
        for (int j = 0; j < 16; ++j) d[32 + n * j + r] = static_cast<uint8_t>(blk->scales[j]);
        for (int c = 0; c < 32; ++c) std::memcpy(d + 288 + 4 * n * c + 4 * r, blk->ql + 4 * c, 4);
        for (int e = 0; e < 16; ++e) std::memcpy(d + 2336 + 4 * n * e + 4 * r, blk->qh + 4 * e, 4);
      }
    }
  }
}

// P16: panel p, element (16 p + j, i) at 16 (p n_in + i) + j (E: the 4- or 2-byte element).
template <class E>
void pack_rows_p16(const uint8_t* src_bytes, uint8_t* dst_bytes, int64_t n_rows, int64_t n_in) {
  const E* src = reinterpret_cast<const E*>(src_bytes);
  E* dst = reinterpret_cast<E*>(dst_bytes);
  for (int64_t p = 0; p < n_rows / 16; ++p) {
    const E* rows = src + 16 * p * n_in;
    E* panel = dst + 16 * p * n_in;
    for (int64_t i = 0; i < n_in; ++i) {
      for (int j = 0; j < 16; ++j) panel[16 * i + j] = rows[j * n_in + i];
    }
  }
}

bool is_float(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

}  // namespace

const TileKernels* simd_kernels_float_p16(DType t) {
  switch (active_isa()) {
    case Isa::Avx512: return simd_kernels_float_p16_avx512(t);
    case Isa::Avx2: return simd_kernels_float_p16_avx2(t);
    default: return nullptr;
  }
}

uint8_t preferred_packing(DType t, int64_t n_rows, bool batch_only, int act_bits) {
  if (batch_only && n_rows > 0 && n_rows % 16 == 0 && simd_kernels_float_p16(t)) return kPackP16;
  if (active_isa() == Isa::Avx2) {
    if (n_rows <= 0 || n_rows % 8 != 0) return kPackNone;
    if (act_bits == 8 && (simd_kernels_q4_r8b(t) || simd_kernels_q4k_r8b(t))) return kPackR8B;
    return simd_kernels_q32_r8(t) ? kPackR8 : kPackNone;
  }
  if (active_isa() != Isa::Avx512) return kPackNone;
  if (n_rows > 0 && n_rows % 16 == 0 &&
      (simd_kernels_q32_r16b_avx512(t, act_bits) || simd_kernels_kquant_r16b_avx512(t, act_bits))) {
    return kPackR16B;
  }
  return simd_kernels_q32_avx512_g4(t, 16) ? kPackG4 : kPackNone;
}

const TileKernels* simd_kernels_packed(DType t, uint8_t packing, int act_bits) {
  if (packing == kPackG4 && active_isa() == Isa::Avx512) return simd_kernels_q32_avx512_g4(t, act_bits);
  if (packing == kPackR16B && active_isa() == Isa::Avx512) {
    return t == DType::Q4_K || t == DType::Q6_K ? simd_kernels_kquant_r16b_avx512(t, act_bits)
                                                 : simd_kernels_q32_r16b_avx512(t, act_bits);
  }
  if (packing == kPackR8 && active_isa() == Isa::Avx2) return simd_kernels_q32_r8(t);
  // R8B tiles read 8-bit levels only; with 16 bits the file layout's kernels run
  if (packing == kPackR8B && active_isa() == Isa::Avx2 && act_bits == 8) {
    return t == DType::Q4_K ? simd_kernels_q4k_r8b(t) : simd_kernels_q4_r8b(t);
  }
  if (packing == kPackP16) return simd_kernels_float_p16(t);
  return nullptr;
}

void pack_rows(DType t, uint8_t packing, const uint8_t* src, uint8_t* dst, int64_t n_rows, int64_t n_in) {
  if (packing == kPackP16 && is_float(t) && n_rows % 16 == 0) {
    if (t == DType::F32) {
      pack_rows_p16<uint32_t>(src, dst, n_rows, n_in);
    } else {
      pack_rows_p16<uint16_t>(src, dst, n_rows, n_in);
    }
    return;
  }
  G4Facts f;
  if (packing == kPackR8 && g4_facts(t, f) && n_rows % 8 == 0) {
    pack_rows_interleaved(f, 8, 2, src, dst, n_rows, n_in / ops::kQK);
    return;
  }
  if ((packing == kPackR8B || packing == kPackR16B) && t == DType::Q4_K) {
    const int n = packing == kPackR8B ? 8 : 16;
    if (n_rows % n == 0) {
      pack_rows_q4k_interleaved(n, src, dst, n_rows, n_in / ops::kQKK);
      return;
    }
  }
  if (packing == kPackR16B && t == DType::Q6_K && n_rows % 16 == 0) {
    pack_rows_q6k_r16b(src, dst, n_rows, n_in / ops::kQKK);
    return;
  }
  if (packing == kPackR8B && (t == DType::Q4_0 || t == DType::Q4_1) && g4_facts(t, f) && n_rows % 8 == 0) {
    pack_rows_interleaved(f, 8, 4, src, dst, n_rows, n_in / ops::kQK);
    return;
  }
  if (packing == kPackR16B && g4_facts(t, f) && n_rows % 16 == 0) {
    pack_rows_interleaved(f, 16, 4, src, dst, n_rows, n_in / ops::kQK);
    return;
  }
  if (packing != kPackG4 || !g4_facts(t, f)) {
    throw InvalidArgument("[ops] no weight layout " + std::to_string(packing) + " for type " +
                          dtype_name(static_cast<uint32_t>(t)));
  }
  const int64_t nb = n_in / ops::kQK;
  const size_t rb = static_cast<size_t>(nb * f.block_bytes);
  for (int64_t r = 0; r < n_rows; ++r) pack_row_g4(f, src + r * rb, dst + r * rb, nb);
}

}  // namespace akvq::cpu
