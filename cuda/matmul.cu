// Matmul kernel (matmul.cuh): a warp per output row, up to 8 tokens per pass over the weights.
#include "matmul.cuh"
#include "warp.cuh"

namespace akvq_cuda {

namespace {

constexpr int kGemvWarps = 4;
constexpr int kMaxGemvTok = 8;

// One warp per output row; lane i takes the row's 32-value chunks i, i + 32, ...
template <int NT>
__global__ void __launch_bounds__(kGemvWarps* kWarp) gemv_kernel(MatmulArgs a) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
  if (r >= a.n_out) return;
  const uint8_t* row = a.w + r * wtype_row_bytes(a.type, a.n_in);
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  float w[32];
  for (int64_t c = lane; c < a.n_in / 32; c += kWarp) {
    dequant32(a.type, row, c, w);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t >= a.n_tok) break;
      const float4* xv = reinterpret_cast<const float4*>(a.x + t * a.n_in + 32 * c);
      float s = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {  // explicit FMAs: the same bits in every instantiation
        const float4 v = xv[j];
        s = fmaf(w[4 * j], v.x, s);
        s = fmaf(w[4 * j + 1], v.y, s);
        s = fmaf(w[4 * j + 2], v.z, s);
        s = fmaf(w[4 * j + 3], v.w, s);
      }
      acc[t] += s;
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float s = warp_sum(acc[t]);
    if (lane == 0 && t < a.n_tok) a.y[t * a.n_out + r] = s;
  }
}

template <int NT>
cudaError_t gemv(const MatmulArgs& a, cudaStream_t stream) {
  const int64_t blocks = (a.n_out + kGemvWarps - 1) / kGemvWarps;
  gemv_kernel<NT><<<static_cast<unsigned>(blocks), kGemvWarps * kWarp, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t matmul(const MatmulArgs& a, cudaStream_t stream) {
  if (!wtype_known(static_cast<int>(a.type)) || a.n_in < 32 || a.n_in % 32 || a.n_in % wtype_block(a.type) ||
      a.n_out < 1 || a.n_tok < 0 || !a.w || !a.x || !a.y || (a.n_out + kGemvWarps - 1) / kGemvWarps > 0x7fffffff ||
      reinterpret_cast<uintptr_t>(a.x) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (a.n_tok == 0) return cudaSuccess;
  if (a.n_tok == 1) return gemv<1>(a, stream);
  // chunks of up to 8 tokens: each token's sum runs in the same order whatever the chunk, so a
  // row's result does not depend on how many rows come with it (batch-invariant, as on the CPU)
  for (int64_t t0 = 0; t0 < a.n_tok; t0 += kMaxGemvTok) {
    MatmulArgs c = a;
    c.x = a.x + t0 * a.n_in;
    c.y = a.y + t0 * a.n_out;
    c.n_tok = a.n_tok - t0 < kMaxGemvTok ? a.n_tok - t0 : kMaxGemvTok;
    const cudaError_t e = gemv<kMaxGemvTok>(c, stream);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace akvq_cuda
