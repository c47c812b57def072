// Flash-decoding kernels over the packed AKVQ cache (kv_attend.cuh).
#include <cmath>

#include "kv_attend.cuh"
#include "warp.cuh"

namespace akvq_cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kTile = kWarp;                   // rows per warp tile (a row per lane)
constexpr int kMaxDims = kMaxHeadDim / kWarp;  // dimensions per lane in the value phase
constexpr int kMaxGroups = kMaxHeadDim / 8;    // groups per row at most

// Shared memory: q̃ [HC][n] | qsum [HC][kMaxSpans][kMaxGroups] | warp states [kWarps][HC][2 + n]
template <int HC>
__global__ void __launch_bounds__(kThreads) attend_split_kernel(AttendArgs a, int64_t total, int64_t max_split) {
  extern __shared__ float sm[];
  const int n = a.head_dim;
  float* qs = sm;
  float* qsum = qs + HC * n;
  float* states = qsum + HC * kMaxSpans * kMaxGroups;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int group = a.n_head / a.n_head_kv;
  const int chunks = group / HC;
  const int kvh = blockIdx.x / chunks;
  const int h0 = kvh * group + (blockIdx.x % chunks) * HC;
  const int64_t qi = blockIdx.z;  // query: rows [0, limit) as if it were decoded alone
  const int64_t limit = attend_query_rows(total, a.n_q, qi);
  const int64_t R = attend_rows_per_split(limit, a.rows_per_split);
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * R;
  if (t0 >= limit) return;  // beyond this query's splits (the whole block)
  const int64_t t1 = t0 + R < limit ? t0 + R : limit;
  const float* q = a.q + qi * a.n_head * n;

  for (int i = threadIdx.x; i < HC * n; i += kThreads) qs[i] = q[static_cast<int64_t>(h0) * n + i] * a.scale;
  __syncthreads();
  if (a.rotate) {
    for (int hh = warp; hh < HC; hh += kWarps) wht_warp(qs + hh * n, n, lane);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < HC * kMaxSpans * kMaxGroups; i += kThreads) {
    const int hh = i / (kMaxSpans * kMaxGroups), s = (i / kMaxGroups) % kMaxSpans, g = i % kMaxGroups;
    float sum = 0.0f;
    if (s < a.n_spans && a.spans[s].packed && a.spans[s].n_rows > 0 && g < a.spans[s].ks.n_groups()) {
      const int G = a.spans[s].ks.group;
      for (int j = 0; j < G; ++j) sum += qs[hh * n + g * G + j];
    }
    qsum[i] = sum;
  }
  __syncthreads();

  float m[HC], l[HC], acc[HC][kMaxDims];
#pragma unroll
  for (int hh = 0; hh < HC; ++hh) {
    m[hh] = -INFINITY, l[hh] = 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxDims; ++k) acc[hh][k] = 0.0f;
  }

  for (int64_t base = t0 + warp * kTile; base < t1; base += kWarps * kTile) {
    const int64_t t = base + lane;
    const bool valid = t < t1;
    const RowRef rr = locate_row(a, valid ? t : t0);
    const AttendSpan& sp = a.spans[rr.span];
    float sc[HC];
    if (!valid) {
#pragma unroll
      for (int hh = 0; hh < HC; ++hh) sc[hh] = -INFINITY;
    } else if (sp.packed) {
      const uint8_t* krow = sp.k + kvh * sp.head_stride_k + rr.row * sp.ks.row_bytes();
#pragma unroll
      for (int hh = 0; hh < HC; ++hh) {
        sc[hh] = row_score(sp.ks, sp.k_levels, qs + hh * n, qsum + (hh * kMaxSpans + rr.span) * kMaxGroups, krow);
      }
    } else {
      const uint16_t* krow = reinterpret_cast<const uint16_t*>(sp.k) + (rr.row * a.n_head_kv + kvh) * n;
#pragma unroll
      for (int hh = 0; hh < HC; ++hh) sc[hh] = half_row_score(qs + hh * n, krow, n);
    }
    float p[HC];
#pragma unroll
    for (int hh = 0; hh < HC; ++hh) {
      const float mnew = fmaxf(m[hh], warp_max(sc[hh]));  // finite: the tile has a valid row
      const float f = m[hh] == -INFINITY ? 0.0f : expf(m[hh] - mnew);
      p[hh] = valid ? expf(sc[hh] - mnew) : 0.0f;
      l[hh] = l[hh] * f + warp_sum(p[hh]);
      m[hh] = mnew;
#pragma unroll
      for (int k = 0; k < kMaxDims; ++k) acc[hh][k] *= f;
    }
    const int nvalid = t1 - base < kTile ? static_cast<int>(t1 - base) : kTile;
    for (int tt = 0; tt < nvalid; ++tt) {
      const int span = __shfl_sync(kFullMask, rr.span, tt);
      const long long r = __shfl_sync(kFullMask, static_cast<long long>(rr.row), tt);
      const AttendSpan& vs = a.spans[span];
      float pt[HC];
#pragma unroll
      for (int hh = 0; hh < HC; ++hh) pt[hh] = __shfl_sync(kFullMask, p[hh], tt);
      if (vs.packed) {
        const uint8_t* vrow = vs.v + kvh * vs.head_stride_v + r * vs.vs.row_bytes();
#pragma unroll
        for (int k = 0; k < kMaxDims; ++k) {
          const int j = lane + k * kWarp;
          if (j >= n) break;
          const float x = dequant_value(vs.vs, vs.v_levels, vrow, j);
#pragma unroll
          for (int hh = 0; hh < HC; ++hh) acc[hh][k] += pt[hh] * x;
        }
      } else {
        const uint16_t* vrow = reinterpret_cast<const uint16_t*>(vs.v) + (r * a.n_head_kv + kvh) * n;
#pragma unroll
        for (int k = 0; k < kMaxDims; ++k) {
          const int j = lane + k * kWarp;
          if (j >= n) break;
          const float x = half_to_float(vrow[j]);
#pragma unroll
          for (int hh = 0; hh < HC; ++hh) acc[hh][k] += pt[hh] * x;
        }
      }
    }
  }

  // the block's warps merge in order into the split's partial
  const int ps = 2 + n;
#pragma unroll
  for (int hh = 0; hh < HC; ++hh) {
    float* st = states + (warp * HC + hh) * ps;
    if (lane == 0) st[0] = m[hh], st[1] = l[hh];
#pragma unroll
    for (int k = 0; k < kMaxDims; ++k) {
      const int j = lane + k * kWarp;
      if (j < n) st[2 + j] = acc[hh][k];
    }
  }
  __syncthreads();
  for (int hh = warp; hh < HC; hh += kWarps) {
    float* out = a.partial + ((qi * max_split + blockIdx.y) * a.n_head + h0 + hh) * ps;
    SoftmaxState s;
    float* first = states + hh * ps;
    s.m = first[0], s.l = first[1];
    for (int j = lane; j < n; j += kWarp) out[2 + j] = first[2 + j];
    for (int w = 1; w < kWarps; ++w) {
      const float* st = states + (w * HC + hh) * ps;
      SoftmaxState b;
      b.m = st[0], b.l = st[1];
      float fa, fb;
      softmax_merge(s, b, fa, fb);
      for (int j = lane; j < n; j += kWarp) out[2 + j] = fa * out[2 + j] + fb * st[2 + j];
    }
    if (lane == 0) out[0] = s.m, out[1] = s.l;
  }
}

// One warp per query head: merges the splits in order, normalizes, rotates back.
__global__ void attend_merge_kernel(AttendArgs a, int64_t total, int64_t max_split) {
  __shared__ float o[kMaxHeadDim];
  const int h = blockIdx.x, lane = threadIdx.x, n = a.head_dim;
  const int64_t qi = blockIdx.y;
  const int64_t n_split = total == 0 ? 0 : attend_splits(attend_query_rows(total, a.n_q, qi), a.rows_per_split);
  const int ps = 2 + n;
  SoftmaxState s;
  for (int j = lane; j < n; j += kWarp) o[j] = 0.0f;
  for (int64_t sp = 0; sp < n_split; ++sp) {
    const float* pr = a.partial + ((qi * max_split + sp) * a.n_head + h) * ps;
    SoftmaxState b;
    b.m = pr[0], b.l = pr[1];
    float fa, fb;
    softmax_merge(s, b, fa, fb);
    for (int j = lane; j < n; j += kWarp) o[j] = fa * o[j] + fb * pr[2 + j];
  }
  const float inv = s.l > 0.0f ? 1.0f / s.l : 0.0f;
  for (int j = lane; j < n; j += kWarp) o[j] *= inv;
  if (a.rotate) wht_warp(o, n, lane);
  __syncwarp();
  for (int j = lane; j < n; j += kWarp) a.out[(qi * a.n_head + h) * n + j] = o[j];
}

size_t split_smem(int hc, int head_dim) {
  return sizeof(float) * (hc * head_dim + hc * kMaxSpans * kMaxGroups + kWarps * hc * (2 + head_dim));
}

// Query heads per block: the largest of 8, 4, 3, 2, 1 that divides the GQA group and whose
// shared memory fits in 48 KiB.
int heads_per_block(int group, int head_dim) {
  for (int hc : {8, 4, 3, 2}) {
    if (group % hc == 0 && split_smem(hc, head_dim) <= 48 * 1024) return hc;
  }
  return 1;
}

template <int HC>
cudaError_t launch(const AttendArgs& a, int64_t total, int64_t n_split, cudaStream_t stream) {
  const int group = a.n_head / a.n_head_kv;
  const size_t smem = split_smem(HC, a.head_dim);
  if (smem > 48 * 1024) return cudaErrorInvalidValue;
  const dim3 grid(a.n_head_kv * (group / HC), static_cast<unsigned>(n_split), static_cast<unsigned>(a.n_q));
  attend_split_kernel<HC><<<grid, kThreads, smem, stream>>>(a, total, n_split);
  return cudaGetLastError();
}

}  // namespace

cudaError_t kv_attend_decode(const AttendArgs& args, cudaStream_t stream) {
  AttendArgs a = args;
  if (a.n_head_kv < 1 || a.n_head < a.n_head_kv || a.n_head % a.n_head_kv != 0 || a.head_dim < 1 ||
      a.head_dim > kMaxHeadDim || a.n_spans < 0 || a.n_spans > kMaxSpans || !a.q || !a.out || !a.partial ||
      (a.rows_per_split > 0 && a.rows_per_split % 128 != 0) || a.n_q < 1 || a.n_q > 65535) {
    return cudaErrorInvalidValue;
  }
  for (int s = 0; s < a.n_spans; ++s) {
    const AttendSpan& sp = a.spans[s];
    if (sp.n_rows < 0 || (sp.n_rows > 0 && (!sp.k || !sp.v))) return cudaErrorInvalidValue;
    if (sp.packed && sp.n_rows > 0) {
      for (const RowSpec* rs : {&sp.ks, &sp.vs}) {
        if (rs->n != a.head_dim || rs->group < 8 || rs->group % 8 || a.head_dim % rs->group ||
            (rs->bits != 2 && rs->bits != 3 && rs->bits != 4 && rs->bits != 8) || (rs->gaussian && rs->bits > 4)) {
          return cudaErrorInvalidValue;
        }
      }
      if (!sp.k_levels || !sp.v_levels) return cudaErrorInvalidValue;
    }
  }
  const int64_t total = attend_total_rows(a);
  if (a.n_q > 1 && a.n_q > total) return cudaErrorInvalidValue;  // every query sees at least one row
  // grid.y: the most splits a query takes (each takes its own, attend_rows_per_split of its rows)
  const int64_t n_split = total == 0 ? 0 : attend_max_splits(total, a.n_q, a.rows_per_split);
  if (n_split > 65535) return cudaErrorInvalidValue;
  cudaError_t e = cudaSuccess;
  if (n_split > 0) {
    switch (heads_per_block(a.n_head / a.n_head_kv, a.head_dim)) {
      case 8: e = launch<8>(a, total, n_split, stream); break;
      case 4: e = launch<4>(a, total, n_split, stream); break;
      case 3: e = launch<3>(a, total, n_split, stream); break;
      case 2: e = launch<2>(a, total, n_split, stream); break;
      default: e = launch<1>(a, total, n_split, stream); break;
    }
    if (e != cudaSuccess) return e;
  }
  attend_merge_kernel<<<dim3(a.n_head, a.n_q), kWarp, 0, stream>>>(a, total, n_split);
  return cudaGetLastError();
}

}  // namespace akvq_cuda
