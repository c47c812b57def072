// Warp-level helpers of the kernels (device code only; include from .cu files).
#pragma once
#include "kv_codec.cuh"

namespace akvq_cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// The warp's in-place rotation of x[n] (shared memory): the stages of kv_codec.cuh with the pairs
// of a stage spread over the lanes (disjoint pairs: the same bits as the serial wht_row).
__device__ inline void wht_warp(float* x, int n, int lane) {
  __syncwarp();
  for (int off = 0; off < n;) {
    const int m = wht_block_at(n, off);
    for (int h = 1; h < m; h <<= 1) {
      for (int p = lane; p < m / 2; p += kWarp) wht_butterfly(x + off, wht_pair_first(p, h), h);
      __syncwarp();
    }
    const float s = wht_scale(m);
    for (int i = lane; i < m; i += kWarp) x[off + i] = mul_rn(x[off + i], s);
    __syncwarp();
    off += m;
  }
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

}  // namespace akvq_cuda
