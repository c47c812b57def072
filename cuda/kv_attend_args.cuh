// The arguments of the flash-decoding kernels (kv_attend.cuh), free of CUDA headers so that the
// CPU tests can build them and run the same row arithmetic on the host.
#pragma once
#include <cstdint>

#include "kv_codec.cuh"

namespace akvq_cuda {

constexpr int kMaxSpans = 6;
constexpr int kMaxGroupHeads = 8;  // query heads per block (a GQA group is served in chunks)

struct AttendSpan {
  bool packed = true;
  // packed: K of head h, row r at k + h·head_stride_k + r·ks.row_bytes() (V alike);
  // fp16:   K of head h, row r at k + (r·n_head_kv + h)·head_dim·2 bytes ([rows, n_head_kv, n])
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  int64_t head_stride_k = 0, head_stride_v = 0;
  int64_t n_rows = 0;
  RowSpec ks, vs;                   // packed only
  const float* k_levels = nullptr;  // device level tables [2^bits] (uniform too: L[c] = c)
  const float* v_levels = nullptr;
};

struct AttendArgs {
  int n_head = 0, n_head_kv = 0, head_dim = 0;  // n_head a multiple of n_head_kv; head_dim <= 256
  float scale = 1.0f;
  bool rotate = false;
  // n_q queries at the last n_q positions of the flat token order: query i sees the rows
  // [0, total − n_q + i] (causal over spans in position order, e.g. one fp16 span; n_q = 1: every
  // row). Each query is split and merged as a single query over its own rows would be (decode),
  // so a query's output does not depend on n_q.
  int n_q = 1;
  const float* q = nullptr;  // [n_q, n_head, head_dim] (not scaled, not rotated)
  float* out = nullptr;      // [n_q, n_head, head_dim]
  AttendSpan spans[kMaxSpans];
  int n_spans = 0;
  int64_t rows_per_split = 0;  // a multiple of 128; 0 = chosen from each query's length
  float* partial = nullptr;    // workspace attend_workspace_floats(args)
};

struct RowRef {
  int span;     // index into AttendArgs::spans
  int64_t row;  // row within that span
};

// Where flat token index t (0 <= t < the sum of the spans' rows) lives.
AKVQ_HD RowRef locate_row(const AttendArgs& a, int64_t t) {
  int s = 0;
  while (s + 1 < a.n_spans && t >= a.spans[s].n_rows) t -= a.spans[s++].n_rows;
  return {s, t};
}

AKVQ_HD int64_t attend_total_rows(const AttendArgs& a) {
  int64_t t = 0;
  for (int s = 0; s < a.n_spans; ++s) t += a.spans[s].n_rows;
  return t;
}

// Rows per split for n_rows tokens: rows_per_split when > 0, else about n_rows / 256 rounded up
// to a multiple of 128 (at least 128): up to ~256 splits, so that even one KV head at a short
// context gives the GPU a few hundred blocks, and the merge pass stays small.
AKVQ_HD int64_t attend_rows_per_split(int64_t n_rows, int64_t rows_per_split) {
  if (rows_per_split > 0) return rows_per_split;
  const int64_t r = (n_rows + 255) / 256;
  return r <= 128 ? 128 : (r + 127) / 128 * 128;
}

AKVQ_HD int64_t attend_splits(int64_t n_rows, int64_t rows_per_split) {
  const int64_t r = attend_rows_per_split(n_rows, rows_per_split);
  const int64_t s = (n_rows + r - 1) / r;
  return s < 1 ? 1 : s;
}

// Rows query i of n_q sees (the first rows of the flat order).
AKVQ_HD int64_t attend_query_rows(int64_t total, int n_q, int64_t i) { return total - n_q + 1 + i; }

// The most splits any of the n_q queries takes (not always the longest one's: a split's rows grow
// in steps of 128 with the length).
AKVQ_HD int64_t attend_max_splits(int64_t total, int n_q, int64_t rows_per_split) {
  int64_t m = 0;
  for (int i = 0; i < n_q; ++i) {
    const int64_t rows = attend_query_rows(total, n_q, i);
    if (rows <= 0) continue;
    const int64_t s = attend_splits(rows, rows_per_split);
    m = s > m ? s : m;
  }
  return m;
}

// Floats of AttendArgs::partial the arguments need: [n_q, attend_max_splits, n_head, 2 + head_dim].
AKVQ_HD int64_t attend_workspace_floats(const AttendArgs& a) {
  const int64_t s = attend_max_splits(attend_total_rows(a), a.n_q, a.rows_per_split);
  return int64_t{a.n_q} * (s > 0 ? s : 1) * a.n_head * (2 + static_cast<int64_t>(a.head_dim));
}

}  // namespace akvq_cuda
