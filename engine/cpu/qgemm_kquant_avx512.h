// The AVX-512 K-quant kernel sets (qgemm_kquant_avx512.cpp), reached through
// simd_kernels_q32_avx512 (cpu/qgemm.h), which picks them by activation precision.
#pragma once
#include "core/dtype.h"
#include "cpu/qgemm.h"

namespace akvq::cpu {

// Q4_K with 8-bit activation levels (TensorView::act_bits == 8): ActFormat::Q8K rows of
// ops::ActQ8K super-blocks. nullptr for every other type (Q6_K keeps the ActQ16K tiles at both levels).
const TileKernels* simd_kernels_kquant_avx512_act8(DType t);

}  // namespace akvq::cpu
