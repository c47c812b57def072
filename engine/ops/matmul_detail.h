// Internal knobs of the matmul driver, for tests and benchmarks (models call ops::matmul).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "cpu/thread_pool.h"

namespace akvq::ops::detail {

struct MatmulOptions {
  bool simd = true;  // false: scalar reference dots (same activation quantization), still tiled/threaded
  int tile_r = 0;    // rows per tile (0: the kernel's preference); must be provided by the kernel set
  int tile_t = 0;    // tokens per tile (0: the kernel's preference)
  int chunk_rows = 0;  // rows per task (0: automatic)
};

constexpr int kMaxGroup = 4;  // weights per matmul_group call

// ys[i][n_tok, rows of ws[i]] = x[n_tok, n_in] · ws[i]ᵀ, i < n_w <= kMaxGroup: when the weights
// share inner size, type, activation precision and kernels, x is quantized once and every tile
// runs in one pass of the pool (e.g. Q/K/V, gate/up); otherwise one matmul each. Each output
// row is computed exactly as by matmul.
void matmul_group(const TensorView* const* ws, float* const* ys, int n_w, const float* x, int64_t n_tok,
                  cpu::ThreadPool& pool, const MatmulOptions& opt);

// y[n_tok, n_out] = x[n_tok, n_in] · Wᵀ with explicit options.
void matmul(const TensorView& w, const float* x, int64_t n_tok, float* y, cpu::ThreadPool& pool,
            const MatmulOptions& opt);

// True when SIMD kernels for t are compiled into this build.
bool has_simd_kernels(DType t);

}  // namespace akvq::ops::detail
