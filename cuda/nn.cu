// Model op kernels (nn.cuh).
#include "nn.cuh"
#include "warp.cuh"

namespace akvq_cuda {

namespace {

constexpr int kRowThreads = 256;

// Block sum of v over kRowThreads threads (red: kRowThreads / 32 floats of shared memory).
__device__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < kRowThreads / kWarp; ++i) s += red[i];
  __syncthreads();
  return s;
}

__global__ void rms_norm_kernel(const float* x, const float* w, int64_t n, float eps, float* y) {
  __shared__ float red[kRowThreads / kWarp];
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) yr[i] = xr[i] * scale * (w ? w[i] : 1.0f);
}

__global__ void layer_norm_kernel(const float* x, const float* w, const float* b, int64_t n, float eps, float* y) {
  __shared__ float red[kRowThreads / kWarp];
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) s += xr[i];
  const float mean = block_sum(s, red) / static_cast<float>(n);
  float v = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) v += (xr[i] - mean) * (xr[i] - mean);
  const float inv = 1.0f / sqrtf(block_sum(v, red) / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) {
    yr[i] = (xr[i] - mean) * inv * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
  }
}

__global__ void rope_kernel(float* x, int64_t n_pairs, int n_head, int head_dim, int n_rot, const int32_t* pos,
                            float theta, float freq_scale, const float* freq_factors, bool half_split) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_pairs) return;
  const int half = n_rot / 2;
  const int i = static_cast<int>(k % half);
  const int64_t th = k / half;  // token · n_head + head
  const int64_t t = th / n_head;
  float c, s;
  rope_cos_sin(pos[t], i, n_rot, theta, freq_scale, freq_factors ? freq_factors[i] : 1.0f, c, s);
  int i0, i1;
  rope_pair(half_split, i, n_rot, i0, i1);
  float* v = x + th * head_dim;
  const float x0 = v[i0], x1 = v[i1];
  v[i0] = x0 * c - x1 * s;
  v[i1] = x0 * s + x1 * c;
}

__global__ void swiglu_kernel(const float* g, const float* u, float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = swiglu_value(g[i], u[i]);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void add_bias_kernel(float* x, const float* b, int64_t total, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) x[i] += b[i % n];
}

__global__ void act_kernel(Act a, float* x, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = act_value(a, x[i]);
}

// Block per id; threads take 32-value chunks.
__global__ void get_rows_kernel(WType t, const uint8_t* table, int64_t ne0, int64_t n_rows, const int32_t* ids,
                                float* out) {
  const int32_t id = ids[blockIdx.x];
  float* o = out + blockIdx.x * ne0;
  const bool ok = id >= 0 && id < n_rows;
  const uint8_t* row = table + (ok ? id : 0) * wtype_row_bytes(t, ne0);
  for (int64_t c = threadIdx.x; c < ne0 / 32; c += blockDim.x) {
    if (ok) {
      dequant32(t, row, c, o + 32 * c);
    } else {
      for (int j = 0; j < 32; ++j) o[32 * c + j] = 0.0f;
    }
  }
}

__global__ void row_absmax_kernel(const float* x, int64_t n, float* amax) {
  __shared__ float red[kRowThreads / kWarp];
  const float* xr = x + blockIdx.x * n;
  float m = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) m = fmaxf(m, fabsf(xr[i]));
  m = warp_max(m);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) red[warp] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int i = 1; i < kRowThreads / kWarp; ++i) m = fmaxf(m, red[i]);
    amax[blockIdx.x] = fmaxf(m, red[0]);
  }
}

__global__ void f32_to_f16_kernel(const float* x, uint16_t* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = float_to_half(x[i]);
}

unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

bool grid_ok(int64_t n, int threads) {
  return n >= 0 && (n + threads - 1) / threads <= 0x7fffffff;
}

}  // namespace

cudaError_t rms_norm(const float* x, const float* w, int64_t n_tok, int64_t n, float eps, float* y, cudaStream_t st) {
  if (n_tok < 0 || n < 1 || n_tok > 0x7fffffff || !x || !y) return cudaErrorInvalidValue;
  if (n_tok == 0) return cudaSuccess;
  rms_norm_kernel<<<static_cast<unsigned>(n_tok), kRowThreads, 0, st>>>(x, w, n, eps, y);
  return cudaGetLastError();
}

cudaError_t layer_norm(const float* x, const float* w, const float* b, int64_t n_tok, int64_t n, float eps, float* y,
                       cudaStream_t st) {
  if (n_tok < 0 || n < 1 || n_tok > 0x7fffffff || !x || !y) return cudaErrorInvalidValue;
  if (n_tok == 0) return cudaSuccess;
  layer_norm_kernel<<<static_cast<unsigned>(n_tok), kRowThreads, 0, st>>>(x, w, b, n, eps, y);
  return cudaGetLastError();
}

cudaError_t rope(float* x, int64_t n_tok, int n_head, int head_dim, int n_rot, const int32_t* pos, float theta,
                 float freq_scale, const float* freq_factors, bool half_split, cudaStream_t st) {
  if (n_tok < 0 || n_head < 1 || n_rot <= 0 || n_rot % 2 || n_rot > head_dim || !x || !pos)
    return cudaErrorInvalidValue;
  const int64_t pairs = n_tok * n_head * (n_rot / 2);
  if (!grid_ok(pairs, 256)) return cudaErrorInvalidValue;
  if (pairs == 0) return cudaSuccess;
  rope_kernel<<<blocks_for(pairs, 256), 256, 0, st>>>(x, pairs, n_head, head_dim, n_rot, pos, theta, freq_scale, freq_factors,
                                                       half_split);
  return cudaGetLastError();
}

cudaError_t swiglu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t st) {
  if (!grid_ok(n, 256) || (n > 0 && (!gate || !up || !out))) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  swiglu_kernel<<<blocks_for(n, 256), 256, 0, st>>>(gate, up, out, n);
  return cudaGetLastError();
}

cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t st) {
  if (!grid_ok(n, 256) || (n > 0 && (!x || !y))) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  add_kernel<<<blocks_for(n, 256), 256, 0, st>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t add_bias(float* x, const float* b, int64_t n_tok, int64_t n, cudaStream_t st) {
  if (n < 1 || n_tok < 0 || !grid_ok(n_tok * n, 256) || !x || !b) return cudaErrorInvalidValue;
  if (n_tok == 0) return cudaSuccess;
  add_bias_kernel<<<blocks_for(n_tok * n, 256), 256, 0, st>>>(x, b, n_tok * n, n);
  return cudaGetLastError();
}

cudaError_t activation(Act a, float* x, int64_t n, cudaStream_t st) {
  if (!grid_ok(n, 256) || (n > 0 && !x) || static_cast<int>(a) < 0 || static_cast<int>(a) > 4) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  act_kernel<<<blocks_for(n, 256), 256, 0, st>>>(a, x, n);
  return cudaGetLastError();
}

cudaError_t get_rows(WType t, const uint8_t* table, int64_t ne0, int64_t n_rows, const int32_t* ids, int64_t n_ids,
                     float* out, cudaStream_t st) {
  if (!wtype_known(static_cast<int>(t)) || ne0 < 32 || ne0 % 32 || ne0 % wtype_block(t) || n_rows < 1 || n_ids < 0 ||
      n_ids > 0x7fffffff || !table || !ids || !out) {
    return cudaErrorInvalidValue;
  }
  if (n_ids == 0) return cudaSuccess;
  get_rows_kernel<<<static_cast<unsigned>(n_ids), 128, 0, st>>>(t, table, ne0, n_rows, ids, out);
  return cudaGetLastError();
}

cudaError_t f32_to_f16(const float* x, uint16_t* y, int64_t n, cudaStream_t st) {
  if (!grid_ok(n, 256) || (n > 0 && (!x || !y))) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  f32_to_f16_kernel<<<blocks_for(n, 256), 256, 0, st>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t row_absmax(const float* x, int64_t n_tok, int64_t n, float* amax, cudaStream_t st) {
  if (n_tok < 0 || n_tok > 0x7fffffff || n < 1 || (n_tok > 0 && (!x || !amax))) return cudaErrorInvalidValue;
  if (n_tok == 0) return cudaSuccess;
  row_absmax_kernel<<<static_cast<unsigned>(n_tok), kRowThreads, 0, st>>>(x, n, amax);
  return cudaGetLastError();
}

}  // namespace akvq_cuda
