// Matmul kernels (matmul.cuh): GEMV for decode, tiled GEMM for prefill.
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
      for (int j = 0; j < 8; ++j) {
        const float4 v = xv[j];
        s += w[4 * j] * v.x + w[4 * j + 1] * v.y + w[4 * j + 2] * v.z + w[4 * j + 3] * v.w;
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

constexpr int kTM = 64, kTN = 64, kTK = 32;  // tokens, outputs, inner chunk

// 256 threads: thread (ty, tx) computes tokens ty·4.. and outputs tx·4.. of the 64 × 64 tile.
__global__ void __launch_bounds__(256) gemm_kernel(MatmulArgs a) {
  __shared__ float ws[kTN][kTK + 1];
  __shared__ float xs[kTM][kTK + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kTM, o0 = static_cast<int64_t>(blockIdx.x) * kTN;
  const int64_t row_bytes = wtype_row_bytes(a.type, a.n_in);
  float acc[4][4] = {};
  for (int64_t c = 0; c < a.n_in / kTK; ++c) {
    if (threadIdx.x < kTN) {
      const int64_t o = o0 + threadIdx.x;
      if (o < a.n_out) {
        dequant32(a.type, a.w + o * row_bytes, c, ws[threadIdx.x]);
      } else {
        for (int j = 0; j < kTK; ++j) ws[threadIdx.x][j] = 0.0f;
      }
    }
    for (int i = threadIdx.x; i < kTM * kTK; i += 256) {
      const int tt = i / kTK, j = i % kTK;
      const int64_t t = t0 + tt;
      xs[tt][j] = t < a.n_tok ? a.x[t * a.n_in + c * kTK + j] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int j = 0; j < kTK; ++j) {
      float xv[4], wv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) xv[i] = xs[ty * 4 + i][j], wv[i] = ws[tx * 4 + i][j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int k = 0; k < 4; ++k) acc[i][k] += xv[i] * wv[k];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t t = t0 + ty * 4 + i;
    if (t >= a.n_tok) continue;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t o = o0 + tx * 4 + k;
      if (o < a.n_out) a.y[t * a.n_out + o] = acc[i][k];
    }
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
      a.n_out < 1 || a.n_tok < 0 || !a.w || !a.x || !a.y || a.n_out > (int64_t{1} << 31) * kGemvWarps ||
      reinterpret_cast<uintptr_t>(a.x) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (a.n_tok == 0) return cudaSuccess;
  if (a.n_tok <= kMaxGemvTok) {
    if (a.n_tok == 1) return gemv<1>(a, stream);
    if (a.n_tok == 2) return gemv<2>(a, stream);
    if (a.n_tok <= 4) return gemv<4>(a, stream);
    return gemv<8>(a, stream);
  }
  const int64_t gy = (a.n_tok + kTM - 1) / kTM, gx = (a.n_out + kTN - 1) / kTN;
  if (gy > 65535) return cudaErrorInvalidValue;
  gemm_kernel<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), 256, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace akvq_cuda
