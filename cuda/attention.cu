// Attention kernel (attention.cuh).
#include <cmath>

#include "attention.cuh"
#include "warp.cuh"

namespace akvq_cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxDims = kMaxHeadDim / kWarp;

__device__ inline float key_value(const AttentionArgs& a, const void* base, int64_t t, int kvh, int j) {
  const int64_t i = (t * a.n_head_kv + kvh) * a.head_dim + j;
  return a.kv_f16 ? half_to_float(static_cast<const uint16_t*>(base)[i]) : static_cast<const float*>(base)[i];
}

__global__ void __launch_bounds__(kWarps* kWarp) attention_kernel(AttentionArgs a) {
  __shared__ float qs[kWarps][kMaxHeadDim];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t pair = static_cast<int64_t>(blockIdx.x) * kWarps + warp;  // query · n_head + head
  if (pair >= a.n_q * a.n_head) return;
  const int n = a.head_dim;
  const int64_t i = pair / a.n_head;
  const int h = static_cast<int>(pair % a.n_head);
  const int kvh = h / (a.n_head / a.n_head_kv);
  const int64_t limit = a.causal ? a.n_kv - a.n_q + i + 1 : a.n_kv;  // keys [0, limit)
  float* q = qs[warp];
  for (int j = lane; j < n; j += kWarp) q[j] = a.q[pair * n + j] * a.scale;
  __syncwarp();
  float m = -INFINITY, l = 0.0f, acc[kMaxDims];
#pragma unroll
  for (int k = 0; k < kMaxDims; ++k) acc[k] = 0.0f;
  for (int64_t base = 0; base < limit; base += kWarp) {
    const int64_t t = base + lane;
    const bool valid = t < limit;
    float sc = -INFINITY;
    if (valid) {
      sc = 0.0f;
      for (int j = 0; j < n; ++j) sc += q[j] * key_value(a, a.k, t, kvh, j);
    }
    const float mnew = fmaxf(m, warp_max(sc));
    const float f = m == -INFINITY ? 0.0f : expf(m - mnew);
    const float p = valid ? expf(sc - mnew) : 0.0f;
    l = l * f + warp_sum(p);
    m = mnew;
#pragma unroll
    for (int k = 0; k < kMaxDims; ++k) acc[k] *= f;
    const int nvalid = limit - base < kWarp ? static_cast<int>(limit - base) : kWarp;
    for (int tt = 0; tt < nvalid; ++tt) {
      const float pt = __shfl_sync(kFullMask, p, tt);
#pragma unroll
      for (int k = 0; k < kMaxDims; ++k) {
        const int j = lane + k * kWarp;
        if (j < n) acc[k] += pt * key_value(a, a.v, base + tt, kvh, j);
      }
    }
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxDims; ++k) {
    const int j = lane + k * kWarp;
    if (j < n) a.out[pair * n + j] = acc[k] * inv;
  }
}

}  // namespace

cudaError_t attention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.n_q < 0 || a.n_kv < 0 || a.n_head_kv < 1 || a.n_head < a.n_head_kv || a.n_head % a.n_head_kv ||
      a.head_dim < 1 || a.head_dim > kMaxHeadDim || (a.causal && a.n_q > a.n_kv) || !a.q || !a.out ||
      (a.n_kv > 0 && (!a.k || !a.v))) {
    return cudaErrorInvalidValue;
  }
  const int64_t pairs = a.n_q * a.n_head;
  if (pairs == 0) return cudaSuccess;
  const int64_t blocks = (pairs + kWarps - 1) / kWarps;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  attention_kernel<<<static_cast<unsigned>(blocks), kWarps * kWarp, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace akvq_cuda
