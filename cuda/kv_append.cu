// Fused append kernel (kv_append.cuh): one warp per (job, KV head) handles K then V.
#include "kv_append.cuh"
#include "warp.cuh"

namespace akvq_cuda {

namespace {

__device__ void move_row(const AppendArgs& a, const AppendJob& job, int h, bool is_v, float* x, int lane) {
  const int n = a.head_dim;
  const int64_t row = static_cast<int64_t>(a.n_head_kv) * n;
  if (job.src_token >= 0) {
    const float* src = (is_v ? a.v : a.k) + job.src_token * row + static_cast<int64_t>(h) * n;
    for (int j = lane; j < n; j += kWarp) x[j] = src[j];
    __syncwarp();
    if (a.rotate) wht_warp(x, n, lane);
    if (job.round_f16) {
      for (int j = lane; j < n; j += kWarp) x[j] = half_to_float(float_to_half(x[j]));
    }
  } else {
    const uint16_t* src = (is_v ? a.v16_src : a.k16_src) + job.src_row * row + static_cast<int64_t>(h) * n;
    for (int j = lane; j < n; j += kWarp) x[j] = half_to_float(src[j]);
  }
  __syncwarp();
  if (job.dst_class < 0) {
    uint16_t* dst = (is_v ? a.v16_dst : a.k16_dst) + job.dst_row * row + static_cast<int64_t>(h) * n;
    for (int j = lane; j < n; j += kWarp) dst[j] = float_to_half(x[j]);
    return;
  }
  const AppendClass& c = a.cls[job.dst_class];
  const RowSpec& spec = is_v ? c.v : c.k;
  uint8_t* dst =
      (is_v ? c.v_seg + h * c.head_stride_v : c.k_seg + h * c.head_stride_k) + job.dst_row * spec.row_bytes();
  const float* levels = is_v ? c.v_levels : c.k_levels;
  for (int g = lane; g < spec.n_groups(); g += kWarp) {  // a group per lane: the serial bits
    quantize_group(spec, levels, x + g * spec.group, group_header_ptr(dst, g), group_codes_ptr(spec, dst, g));
  }
}

__global__ void append_kernel(AppendArgs a) {
  __shared__ float x[kMaxHeadDim];
  const AppendJob job = a.jobs[blockIdx.x];
  const int h = blockIdx.y;
  move_row(a, job, h, false, x, threadIdx.x);
  __syncwarp();
  move_row(a, job, h, true, x, threadIdx.x);
}

bool spec_ok(const RowSpec& s, int n) {
  return s.n == n && s.group >= 8 && s.group % 8 == 0 && n % s.group == 0 &&
         (s.bits == 2 || s.bits == 3 || s.bits == 4 || s.bits == 8) && (!s.gaussian || s.bits <= 4);
}

}  // namespace

cudaError_t kv_append(const AppendArgs& a, cudaStream_t stream) {
  if (a.n_jobs == 0) return cudaSuccess;
  if (a.n_jobs < 0 || a.head_dim < 1 || a.head_dim > kMaxHeadDim || a.n_head_kv < 1 || a.n_head_kv > 65535 || !a.jobs) {
    return cudaErrorInvalidValue;
  }
  for (const AppendClass& c : a.cls) {
    if (c.k_seg && (!spec_ok(c.k, a.head_dim) || (c.k.gaussian && !c.k_levels))) return cudaErrorInvalidValue;
    if (c.v_seg && (!spec_ok(c.v, a.head_dim) || (c.v.gaussian && !c.v_levels))) return cudaErrorInvalidValue;
  }
  append_kernel<<<dim3(a.n_jobs, a.n_head_kv), kWarp, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace akvq_cuda
