// AVX-512 versions of the GQA decode row kernels of attend_tile.h (tile::scores_rows_h and
// tile::pv_rows_h): the R query heads of one KV head against the same fp16 K/V rows, 16 lanes per
// instruction instead of 8. The results are the portable kernels' bits: a 16-lane FMA over
// values d .. d + 15 is the portable kernel's two 8-lane chains (a0 over d .. d + 7, a1 over
// d + 8 .. d + 15) side by side, whose halves are then added and reduced in the same order; the
// value kernel is a chain over j per lane whatever the width. The entry points below choose at run
// time (cpu/isa.h): the AVX-512 kernels where active(), else the portable ones, so a caller calls
// them alone.
#pragma once
#include <cstdint>

#include "kv/attend_tile.h"

namespace akvq::kv::tile512 {

// Whether the AVX-512 kernels run: compiled in (cpu/avx512_target.h) and cpu::active_isa() is
// AVX-512 (read per call: tests switch the ISA cap between calls).
bool active();

// s[r * lds + j] = q[r * ldq + 0:hd] . row[j][0:hd] for r < rows, j < n: tile::scores_rows_h bit
// for bit. row: n pointers to fp16 rows; hd a multiple of 8; rows >= 1 (any number). The rows of
// `ahead` are requested while the scores run (tile::Ahead).
void scores_rows_h(int rows, const float* q, int ldq, const uint16_t* const* row, int n, int hd, float* s, int lds,
                   const tile::Ahead& ahead = {});

// acc[r * lda + 0:hd] += sum_j p[r * ldp + j] * row[j][0:hd] for r < rows: tile::pv_rows_h bit for
// bit. row: n pointers to fp16 rows; hd a multiple of 8; rows >= 1 (any number).
void pv_rows_h(int rows, const float* p, int ldp, int n, const uint16_t* const* row, int hd, float* acc, int lda);

}  // namespace akvq::kv::tile512
