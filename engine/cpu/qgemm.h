// CPU matmul micro-kernels. A kernel computes one tile of y = x · Wᵀ: R weight rows (R <= 4)
// against T activation rows (T <= kMaxTileT = 12), over the whole inner dimension. The right-hand side is
// prepared once per matmul (ops/matmul.cpp): quantized to 16 bits (Q16 rows / ActQ16K, see
// ops/qblocks.h) for quantized weights, plain f32 for float weights.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace akvq::cpu {

struct ActRows {
  const uint8_t* data = nullptr;  // row t at data + t * stride: a Q16 row, ActQ16K[nb] or float[n_in]
  size_t stride = 0;
  // Q16 only: transposed copies of the per-block scales d and sums s of the rows: block b of
  // tokens t, t+1, ... at d_tr / s_tr + b * tr_stride + t (padded so that 8 floats can be loaded
  // from any t < n_tok).
  const float* d_tr = nullptr;
  const float* s_tr = nullptr;
  size_t tr_stride = 0;
};

// y[t * ldy + r] = row r of w (rows w_stride bytes apart) · activation row t0 + t, for r < R, t < T.
// n_in is the inner dimension (a multiple of the type's block size).
using TileFn = void (*)(const uint8_t* w, size_t w_stride, const ActRows& x, int64_t t0, int64_t n_in, float* y,
                        int64_t ldy);

constexpr int kMaxTileR = 4;
constexpr int kMaxTileT = 12;

// The right-hand side a kernel set reads: Native = the weight type's usual format (Q16 rows,
// ActQ16K or f32, ops/qblocks.h); Q16X = the byte-split groups of the AVX-512 kernels
// (ops/qblocks.h), whose offset lanes and high bytes depend on the weight type; Q8X = the same
// groups for 8-bit activation levels (h = q, l = 0: one byte pass); Q8K = ActQ8K super-blocks
// (ops/qblocks.h) of the AVX-512 Q4_K tiles with 8-bit levels; F32T = f32 rows interleaved
// by tiles of kActTileT tokens for the P16 panel tiles: value i of token t at
// data + (t / kActTileT) * stride + (kActTileT * i + t % kActTileT) * 4 bytes (stride = bytes of one
// tile, the last tile zero padded), so the tokens of a tile are read as one stream. Q16XK =
// ActQ16XK super-blocks (ops/qblocks.h) of the AVX-512 R16B Q4_K / Q6_K tiles, both precisions.
enum class ActFormat { Native, Q16X, Q8X, Q8K, F32T, Q16XK };
constexpr int kActTileT = 12;

struct TileKernels {
  TileFn fn[kMaxTileR][kMaxTileT] = {};  // fn[R-1][T-1]; nullptr where not provided
  ActFormat act = ActFormat::Native;
  uint8_t packing = 0;         // the weight layout fn reads: 0 = the file's blocks, else a Packing
  int row_unit = 1;            // weight rows per unit of R: fn[R-1][T-1] computes R * row_unit rows
  int pref_r1 = 4;             // preferred R when T == 1 (decode)
  int pref_r = 2, pref_t = 4;  // preferred tile for several tokens (prefill)
};

// Kernels for weight type t compiled for this build's SIMD ISA, or nullptr when there are none
// (the caller then uses the scalar reference dots).
// act_bits (TensorView::act_bits): 8 picks kernels specialised for 8-bit activation levels where
// the ISA has them; every other kernel set reads both precisions.
const TileKernels* simd_kernels(DType t, int act_bits = 16);
const TileKernels* simd_kernels_q32(DType t);  // Q4_0, Q4_1, Q8_0 (qgemm_q32.cpp)
// AVX-512 VNNI kernels (run-time dispatch): Q4_0, Q4_1, Q8_0 (qgemm_q32_avx512.cpp; act_bits picks
// the 16- or 8-bit activation kernels), and through it Q4_K (qgemm_kquant_avx512.cpp).
const TileKernels* simd_kernels_q32_avx512(DType t, int act_bits);
const TileKernels* simd_kernels_kquant_avx512(DType t);
const TileKernels* simd_kernels_kquant(DType t);  // Q4_K, Q6_K (qgemm_kquant.cpp)
// AVX2 Q4_K tiles for 8-bit activation levels (Q8K rows; qgemm_kquant.cpp), or nullptr.
const TileKernels* simd_kernels_kquant_act8(DType t);
const TileKernels* simd_kernels_float(DType t);   // F32, F16, BF16 (gemm_float.cpp)

// Weight layouts made at load (ops/pack.h). G4 (Q4_0, Q4_1, Q8_0): each row's blocks in groups of
// 4 with the group's fp16 scales first: d[4] (Q4_1: then m[4]), then the quants of the 4 blocks,
// Q4: the 16 nibble bytes of each block in turn (64 bytes), Q8_0: bytes 0-15 of each block, then
// bytes 16-31 of each block (128 bytes); a group takes exactly the bytes of its 4 blocks, so rows
// keep their size and offsets, and the last nb % 4 blocks of a row stay as in the file.
// P16 (F32, F16, BF16; n_rows a multiple of 16): rows in panels of 16, each panel inner-index
// major: element (row 16p + j, index i) at panel p's start + (16 i + j) elements; a panel takes
// the bytes of its 16 rows. Read by the panel tiles (gemm_float_panel_avx512.cpp, _avx2.cpp), which
// are fast for many tokens and slow for one: only weights that are always multiplied by whole
// batches (the vision tower, the projector) use it.
// R8 (Q4_0, Q4_1, Q8_0; n_rows a multiple of 8; the AVX2 kernels, qgemm_q32_r8_avx2.cpp): rows in
// groups of 8, block-index major: group block b = the fp16 d of the 8 rows' block b (Q4_1: then
// their m), then the quants in chunks of 16 bytes, chunk i = bytes 2i, 2i + 1 of each row's quants
// in turn (8 chunks for Q4, 16 for Q8_0); a group takes the bytes of its 8 rows.
// R8B (Q4_0, Q4_1, Q4_K with 8-bit activation levels; the AVX2 byte-dot tiles, qgemm_q4_r8b_avx2.cpp):
// R8 with 4-byte pieces: chunk i of 32 bytes = bytes 4i .. 4i + 3 of each row's quants in turn
// (4 chunks), so that one register holds 4 consecutive nibble bytes of each of the 8 rows.
// Q4_K (qgemm_q4k_r8b_avx2.cpp) likewise, per super-block of the 8 rows (8 * 144 bytes): d[8] and
// dmin[8] (fp16), then the rows' 6-bit scales sc and mins mn as [8 j][8 r] tables (index i = 8j + r)
// split into A[32], B[32], H[32]: A[p] = low 4 bits of sc[p] | of sc[p + 32] << 4, B[p] the same of
// mn, H[p] = high 2 bits of sc[p] | of sc[p + 32] << 2 | of mn[p] << 4 | of mn[p + 32] << 6; then
// 32 chunks of 32 bytes, chunk c = qs bytes 4c .. 4c + 3 of each row in turn.
// R16B (Q4_0, Q4_1, Q8_0; n_rows a multiple of 16; the AVX-512 tiles, qgemm_q32_r16b_avx512.cpp):
// R8B with groups of 16 rows: group block b = d[16] (Q4_1: then m[16]), then chunks of 64 bytes
// (4 for Q4, 8 for Q8_0), chunk c = quant bytes 4c .. 4c + 3 of each row in turn, so that one
// 512-bit register holds 4 consecutive quant bytes of each of the 16 rows.
// Q4_K in R16B (qgemm_kquant_r16b_avx512.cpp): Q4_K's R8B with 16 rows, per super-block of the 16
// rows (16 * 144 bytes): d[16], dmin[16] (fp16), the scales and mins as [8 j][16 r] tables
// (index i = 16j + r) split into A[64], B[64], H[64] (A[p] = low 4 bits of sc[p] | of sc[p + 64]
// << 4, B the same of mn, H[p] = high 2 bits of sc[p] | of sc[p + 64] << 2 | of mn[p] << 4 | of
// mn[p + 64] << 6), then 32 chunks of 64 bytes, chunk c = qs bytes 4c .. 4c + 3 of each row.
// Q6_K in R16B (the same file): per super-block of the 16 rows (16 * 210 bytes): d[16] (fp16), the
// int8 scales as [16 j][16 r], then 32 chunks of 64 bytes of ql (chunk c = ql bytes 4c .. 4c + 3 of
// each row), then 16 chunks of 64 bytes of qh (chunk e = qh bytes 4e .. 4e + 3 of each row).
enum Packing : uint8_t { kPackNone = 0, kPackG4 = 1, kPackP16 = 2, kPackR8 = 3, kPackR8B = 4, kPackR16B = 5 };

// The layout the active kernels read best for a weight of type t with n_rows rows (kPackNone:
// the file's). batch_only: the weight only ever multiplies many rows at once (no decode);
// act_bits: its activation precision (TensorView::act_bits), which picks R8B over R8 on AVX2.
uint8_t preferred_packing(DType t, int64_t n_rows = 0, bool batch_only = false, int act_bits = 16);
// P16 panel tiles for F32 / F16 / BF16 (row_unit 16) of the active ISA, or nullptr (other types,
// no such kernels: NEON, scalar builds).
const TileKernels* simd_kernels_float_p16(DType t);
const TileKernels* simd_kernels_float_p16_avx512(DType t);  // nullptr without AVX-512 kernels
const TileKernels* simd_kernels_float_p16_avx2(DType t);    // nullptr without AVX2
// Kernels of the active ISA for type t in layout `packing`, or nullptr.
const TileKernels* simd_kernels_packed(DType t, uint8_t packing, int act_bits = 16);
const TileKernels* simd_kernels_q32_avx512_g4(DType t, int act_bits);  // qgemm_q32_avx512.cpp
const TileKernels* simd_kernels_q32_r8(DType t);  // AVX2 R8 tiles (qgemm_q32_r8_avx2.cpp), or nullptr
// AVX2 R8B tiles for Q4_0 / Q4_1 with 8-bit levels (Q8X rows; qgemm_q4_r8b_avx2.cpp), or nullptr.
const TileKernels* simd_kernels_q4_r8b(DType t);
// AVX2 R8B tiles for Q4_K with 8-bit levels (Q8K rows; qgemm_q4k_r8b_avx2.cpp), or nullptr.
const TileKernels* simd_kernels_q4k_r8b(DType t);
// AVX-512 R16B tiles for Q4_0 / Q4_1 / Q8_0 (Q16X rows, or Q8X with act_bits == 8; qgemm_q32_r16b_avx512.cpp),
// or nullptr.
const TileKernels* simd_kernels_q32_r16b_avx512(DType t, int act_bits);
// AVX-512 R16B tiles for Q4_K and Q6_K (Q16XK rows, both precisions; qgemm_kquant_r16b_avx512.cpp),
// or nullptr.
const TileKernels* simd_kernels_kquant_r16b_avx512(DType t, int act_bits);
// Rewrites n_rows rows of n_in values (type t, file layout) from src into dst in `packing`.
// Throws InvalidArgument for a type / layout pair it does not know.
void pack_rows(DType t, uint8_t packing, const uint8_t* src, uint8_t* dst, int64_t n_rows, int64_t n_in);

// Fast activation quantization (act_quant.cpp), bit-identical to ops::ref::quantize_row_q16 /
// quantize_row_q16k (falls back to them without AVX2 or NEON).
// qmax: ops::kActQ16Max or ops::kActQ8Max (8-bit levels).
void quantize_row_q16(const float* x, void* out_row, int64_t n, int qmax = 32767);
void quantize_row_q16k(const float* x, void* out_act_q16k, int64_t n, int qmax = 32767);
// Q16X row (ops/qblocks.h) of x[n] for weights of type `weight` (Q4_0, Q4_1 or Q8_0), n a
// multiple of 32: the integers and scales of quantize_row_q16, regrouped (act_quant_q16x.cpp).
// With 8-bit levels (qmax = 127) h = q and l = 0, and the kernels skip the l pass.
void quantize_row_q16x(const float* x, void* out_row, int64_t n, DType weight, int qmax);
#if defined(AKVQ_HAVE_AVX512_KERNELS)
// The same row by the AVX-512 path (act_quant_q16x_avx512.cpp), the same bytes. The CPU must have
// AVX-512: quantize_row_q16x calls it where active_isa() is AVX-512.
void quantize_row_q16x_avx512(const float* x, void* out_row, int64_t n, DType weight, int qmax);
#endif
// ActQ8K row (ops/qblocks.h: n / 256 super-blocks) of x[n], n a multiple of 256: the integers of
// quantize_row_q16k with 8-bit levels, in the Q4_K nibble order. qmax > 127: InvalidArgument.
void quantize_row_q8k(const float* x, void* out_row, int64_t n, int qmax);
// Q16XK row (ops/qblocks.h: n / 256 ActQ16XK super-blocks) of x[n], n a multiple of 256: the
// integers of quantize_row_q16k split into bytes (qmax <= 127: h = q, l = 0), with their sums.
void quantize_row_q16xk(const float* x, void* out_row, int64_t n, int qmax);

}  // namespace akvq::cpu
