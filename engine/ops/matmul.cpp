// The matmul driver: validates, quantizes the activation rows once to 16 bits (Q16 rows /
// ActQ16K, ops/qblocks.h), then splits the output into tasks of (row chunk, token block) run on
// the thread pool. Inside a task, tiles of R rows x T tokens are computed by the SIMD
// micro-kernels (cpu/qgemm.h), or by the scalar reference dots when none are compiled in.
// Also get_rows and dequantize_row.
#include <akvq/error.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/qgemm.h"
#include "cpu/prefetch.h"
#include "ops/matmul_detail.h"
#include "ops/ops.h"
#include "ops/ref.h"

namespace akvq::ops {

namespace {

constexpr int64_t kTokenBlock = 64;  // tokens per task: their activations stay in L2

void validate(const TensorView& w, const float* x, int64_t n_tok, const float* y) {
  if (!dtype_info(static_cast<uint32_t>(w.type))) {
    throw InvalidArgument("[ops] matmul '" + w.name + "': unsupported weight type " +
                          dtype_name(static_cast<uint32_t>(w.type)));
  }
  const DTypeInfo& info = dtype_info(w.type);
  if (w.ne[0] <= 0 || w.ne[0] % info.block != 0) {
    throw InvalidArgument("[ops] matmul '" + w.name + "': inner size " + std::to_string(w.ne[0]) +
                          " is not a positive multiple of the " + info.name + " block size " +
                          std::to_string(info.block));
  }
  if (n_tok < 0) throw InvalidArgument("[ops] matmul '" + w.name + "': negative token count");
  if (w.act_bits != 8 && w.act_bits != 16) {
    throw InvalidArgument("[ops] matmul '" + w.name + "': activation precision " + std::to_string(w.act_bits) +
                          " bits (8 or 16)");
  }
  if (n_tok > 0 && (!w.data || !x || !y)) {
    throw InvalidArgument("[ops] matmul '" + w.name + "': null data pointer");
  }
}

// Scratch for the prepared activations of the calling thread.
struct ActBuffer {
  std::vector<uint8_t> rows;
  std::vector<float> tr;  // d_tr then s_tr
};

// n_tok rows of `stride` bytes (a multiple of 64) in buf, 64-byte aligned.
uint8_t* aligned_rows(ActBuffer& buf, size_t stride, int64_t n_tok) {
  if (buf.rows.size() < stride * n_tok + 64) buf.rows.resize(stride * n_tok + 64);
  return buf.rows.data() + (64 - reinterpret_cast<uintptr_t>(buf.rows.data()) % 64) % 64;
}

// fn(t) for t < n_tok, spread over the pool when there are enough tokens.
template <class Fn>
void for_each_token(int64_t n_tok, cpu::ThreadPool& pool, const Fn& fn) {
  const int n_thr = pool.size();
  if (n_tok >= 4 && n_thr > 1) {
    const int n_tasks = static_cast<int>(std::min<int64_t>(n_tok, 4 * n_thr));
    pool.run(n_tasks, [&](int task, int) {
      for (int64_t t = task * n_tok / n_tasks; t < (task + 1) * n_tok / n_tasks; ++t) fn(t);
    });
  } else {
    for (int64_t t = 0; t < n_tok; ++t) fn(t);
  }
}

cpu::ActRows prepare_act(DType type, const float* x, int64_t n_tok, int64_t n_in, const cpu::TileKernels* k, int qmax,
                         cpu::ThreadPool& pool) {
  thread_local ActBuffer buf;
  cpu::ActRows a;
  const bool simd = k != nullptr;
  const ref::ActKind kind = ref::act_kind(type);
  if (k && k->act == cpu::ActFormat::F32T) {  // tokens interleaved by tiles (cpu/qgemm.h)
    constexpr int TT = cpu::kActTileT;
    const int64_t n_tiles = (n_tok + TT - 1) / TT;
    a.stride = static_cast<size_t>(n_in) * TT * sizeof(float);
    float* rows = reinterpret_cast<float*>(aligned_rows(buf, a.stride, n_tiles));
    a.data = reinterpret_cast<const uint8_t*>(rows);
    for_each_token(n_tiles, pool, [&](int64_t tile) {
      float* dst = rows + tile * n_in * TT;
      for (int l = 0; l < TT; ++l) {
        const int64_t t = tile * TT + l;
        if (t < n_tok) {
          for (int64_t i = 0; i < n_in; ++i) dst[i * TT + l] = x[t * n_in + i];
        } else {  // the last tile's missing tokens
          for (int64_t i = 0; i < n_in; ++i) dst[i * TT + l] = 0.0f;
        }
      }
    });
    return a;
  }
  if (k && (k->act == cpu::ActFormat::Q8K || k->act == cpu::ActFormat::Q16XK)) {
    // super-block rows of the K-quant tiles: ActQ8K (Q4_K, 8-bit levels) or ActQ16XK (Q4_K / Q6_K
    // in R16B, AVX-512)
    const bool q8k = k->act == cpu::ActFormat::Q8K;
    a.stride = static_cast<size_t>(n_in / kQKK) * (q8k ? sizeof(ActQ8K) : sizeof(ActQ16XK));  // a multiple of 64
    uint8_t* rows = aligned_rows(buf, a.stride, n_tok);
    a.data = rows;
    const auto quantize = q8k ? cpu::quantize_row_q8k : cpu::quantize_row_q16xk;
    for_each_token(n_tok, pool, [&](int64_t t) { quantize(x + t * n_in, rows + t * a.stride, n_in, qmax); });
    return a;
  }
  if (k && k->act != cpu::ActFormat::Native) {  // byte-split groups of the AVX-512 kernels
    a.stride = static_cast<size_t>(act_q16x_row_bytes(n_in));
    uint8_t* rows = aligned_rows(buf, a.stride, n_tok);
    a.data = rows;
    for_each_token(n_tok, pool,
                   [&](int64_t t) { cpu::quantize_row_q16x(x + t * n_in, rows + t * a.stride, n_in, type, qmax); });
    return a;
  }
  if (kind == ref::ActKind::F32) {
    a.data = reinterpret_cast<const uint8_t*>(x);
    a.stride = static_cast<size_t>(n_in) * sizeof(float);
    return a;
  }
  const bool q16 = kind == ref::ActKind::Q16;
  const int64_t nb = n_in / (q16 ? kQK : kQKK);
  const size_t row_bytes = q16 ? static_cast<size_t>(act_q16_row_bytes(n_in)) : nb * sizeof(ActQ16K);
  a.stride = (row_bytes + 63) / 64 * 64;  // rows 64-byte aligned
  uint8_t* rows = aligned_rows(buf, a.stride, n_tok);
  a.data = rows;
  for_each_token(n_tok, pool, [&](int64_t t) {
    const float* xt = x + t * n_in;
    uint8_t* out = rows + t * a.stride;
    if (q16) {
      if (simd) {
        cpu::quantize_row_q16(xt, out, n_in, qmax);
      } else {
        ref::quantize_row_q16(xt, out, n_in, qmax);
      }
    } else if (simd) {
      cpu::quantize_row_q16k(xt, out, n_in, qmax);
    } else {
      ref::quantize_row_q16k(xt, reinterpret_cast<ActQ16K*>(out), n_in, qmax);
    }
  });
  if (q16) {  // transposed block scales and sums for the multi-token tiles
    a.tr_stride = static_cast<size_t>((n_tok + 7) / 8 * 8 + 8);
    const size_t n_tr = a.tr_stride * nb;
    if (buf.tr.size() < 2 * n_tr) buf.tr.resize(2 * n_tr);
    float* d_tr = buf.tr.data();
    float* s_tr = d_tr + n_tr;
    for (int64_t t = 0; t < n_tok; ++t) {
      const uint8_t* row = rows + t * a.stride;
      const float* d = act_q16_d(row, n_in);
      const float* s = act_q16_s(row, n_in);
      for (int64_t b = 0; b < nb; ++b) d_tr[b * a.tr_stride + t] = d[b], s_tr[b * a.tr_stride + t] = s[b];
    }
    for (int64_t b = 0; b < nb; ++b) {
      std::fill(d_tr + b * a.tr_stride + n_tok, d_tr + (b + 1) * a.tr_stride, 0.0f);
      std::fill(s_tr + b * a.tr_stride + n_tok, s_tr + (b + 1) * a.tr_stride, 0.0f);
    }
    a.d_tr = d_tr;
    a.s_tr = s_tr;
  }
  return a;
}

}  // namespace

namespace detail {

bool has_simd_kernels(DType t) {
  return cpu::simd_kernels(t) != nullptr;
}

namespace {

// Bytes of a task's weights requested into the L2 when it starts (cpu::prefetch_span). The tiles
// request the weights 6-16 KB ahead of what they read (cpu::prefetch_ahead), so without this a
// task's first kilobytes waited on memory a line at a time, in each of the ~550 tasks of a SmolLM2
// decode step. Step-level A/B on a 2-core Zen 4 (bench/RESULTS.md): SmolLM2 batch 8 +1.1%, batch 1
// +2.4%; 4 KB or 16 KB instead: no difference. No value changes.
constexpr size_t kTaskStartBytes = 8192;

// The kernels for w and the weight bytes they read (the packed copy when they read its layout).
const cpu::TileKernels* select_kernels(const TensorView& w, bool simd, const uint8_t*& wdata) {
  wdata = static_cast<const uint8_t*>(w.data);
  if (!simd) return nullptr;
  if (w.packed) {
    if (const cpu::TileKernels* k = cpu::simd_kernels_packed(w.type, w.packing, w.act_bits)) {
      wdata = static_cast<const uint8_t*>(w.packed);
      return k;
    }
  }
  return cpu::simd_kernels(w.type, w.act_bits);
}

}  // namespace

// ys[i][n_tok, rows of ws[i]] = x · ws[i]ᵀ for weights that share the inner size, type and
// kernels: x is quantized once and all the tiles run in one pass of the thread pool.
void matmul_group(const TensorView* const* ws, float* const* ys, int n_w, const float* x, int64_t n_tok,
                  cpu::ThreadPool& pool, const MatmulOptions& opt) {
  if (n_w < 1) return;
  const TensorView& w = *ws[0];
  const uint8_t* wdata[kMaxGroup];
  if (n_w > kMaxGroup) throw InvalidArgument("[ops] matmul_group: more than 4 weights");
  const cpu::TileKernels* k = nullptr;  // the kernels of ws[0], which every weight must share
  for (int i = 0; i < n_w; ++i) {
    validate(*ws[i], x, n_tok, ys[i]);
    const cpu::TileKernels* ki = select_kernels(*ws[i], opt.simd, wdata[i]);
    if (i == 0) k = ki;
    if (i > 0 && (ki != k || ws[i]->type != w.type || ws[i]->ne[0] != w.ne[0] || ws[i]->act_bits != w.act_bits)) {
      for (int j = 0; j < n_w; ++j) matmul_group(&ws[j], &ys[j], 1, x, n_tok, pool, opt);  // not groupable
      return;
    }
  }
  const int64_t n_in = w.ne[0];
  if (n_tok == 0) return;
  const cpu::ActRows a = prepare_act(w.type, x, n_tok, n_in, k, ref::act_qmax(w), pool);

  int R = 1, T = 1;  // tile: R units of k->row_unit rows x T tokens
  if (k) {
    R = n_tok == 1 ? k->pref_r1 : k->pref_r;
    T = n_tok == 1 ? 1 : k->pref_t;
    if (opt.tile_r > 0) R = opt.tile_r;
    if (opt.tile_t > 0) T = opt.tile_t;
    bool ok = R >= 1 && T >= 1 && R <= cpu::kMaxTileR && T <= cpu::kMaxTileT;
    for (int r = 1; ok && r <= R; ++r) {
      for (int t = 1; ok && t <= T; ++t) ok = k->fn[r - 1][t - 1] != nullptr;
    }
    if (!ok) {  // every smaller tile is needed for the edges
      throw InvalidArgument("[ops] matmul: no " + std::to_string(R) + "x" + std::to_string(T) + " tile kernel for " +
                            dtype_info(w.type).name);
    }
    for (int i = 0; i < n_w; ++i) {
      if (ws[i]->rows() % k->row_unit != 0) {
        throw InvalidArgument("[ops] matmul '" + ws[i]->name + "': " + std::to_string(ws[i]->rows()) +
                              " rows in a layout of panels of " + std::to_string(k->row_unit));
      }
    }
  }
  const int unit = k ? k->row_unit : 1;
  const int64_t R_rows = int64_t{R} * unit;
  const int n_thr = pool.size();
  // Token blocks of at most ~kTokenBlock tokens, all about the same size (577 tokens: 10 x 58,
  // not 9 x 64 + 1), a multiple of the tile's T.
  const int64_t tb_max = std::max<int64_t>(T, kTokenBlock / T * T);
  const int64_t n_tb0 = (n_tok + tb_max - 1) / tb_max;
  const int64_t tb = ((n_tok + n_tb0 - 1) / n_tb0 + T - 1) / T * T;
  const int64_t n_tb = (n_tok + tb - 1) / tb;
  int64_t total_rows = 0;
  for (int i = 0; i < n_w; ++i) total_rows += ws[i]->rows();
  // Row chunks: about 2 per thread over all the weights together, at least one tile high. Each
  // task starts its stream of weights afresh (kTaskStartBytes); step-level A/B on a 2-core Zen 4
  // against 4 per thread (bench/RESULTS.md): SmolLM2 batch 8 +2.2%, batch 1 +1.7%, 1 per thread
  // -0.8% and 3 -1.0% against 2, 8 -2.5% against 4; 1.1B Q4_0 decode and prefill of 16-200 tokens
  // within 1.5%.
  int64_t chunk = opt.chunk_rows;
  if (chunk <= 0) {
    const int64_t want_chunks = std::max<int64_t>(1, 2 * n_thr / n_tb);
    chunk = (total_rows + want_chunks - 1) / want_chunks;
  }
  chunk = std::max<int64_t>(R_rows, (chunk + R_rows - 1) / R_rows * R_rows);
  int64_t first_task[kMaxGroup + 1] = {0};  // tasks of weight i: [first_task[i], first_task[i + 1])
  for (int i = 0; i < n_w; ++i) first_task[i + 1] = first_task[i] + (ws[i]->rows() + chunk - 1) / chunk * n_tb;
  if (first_task[n_w] == 0) return;

  pool.run(static_cast<int>(first_task[n_w]), [&](int task, int) {
    int i = 0;
    while (task >= first_task[i + 1]) ++i;
    const TensorView& wi = *ws[i];
    const int64_t n_out = wi.rows(), local = task - first_task[i];
    const size_t w_stride = wi.row_bytes();
    const uint8_t* wd = wdata[i];
    float* y = ys[i];
    const int64_t r_begin = local / n_tb * chunk, r_end = std::min(n_out, r_begin + chunk);
    const int64_t t_begin = local % n_tb * tb, t_end = std::min(n_tok, t_begin + tb);
    if (k) cpu::prefetch_span<true>(wd + r_begin * w_stride, std::min(kTaskStartBytes, (r_end - r_begin) * w_stride));
    for (int64_t r0 = r_begin; r0 < r_end; r0 += R_rows) {
      const int rr = static_cast<int>(std::min<int64_t>(R_rows, r_end - r0));  // a multiple of unit
      for (int64_t t0 = t_begin; t0 < t_end; t0 += T) {
        const int tt = static_cast<int>(std::min<int64_t>(T, t_end - t0));
        float* yt = y + t0 * n_out + r0;
        if (k) {
          k->fn[rr / unit - 1][tt - 1](wd + r0 * w_stride, w_stride, a, t0, n_in, yt, n_out);
        } else {
          for (int t = 0; t < tt; ++t) {
            for (int r = 0; r < rr; ++r) {
              yt[t * n_out + r] = ref::vec_dot(wi.type, wd + (r0 + r) * w_stride, a.data + (t0 + t) * a.stride, n_in);
            }
          }
        }
      }
    }
  });
}

void matmul(const TensorView& w, const float* x, int64_t n_tok, float* y, cpu::ThreadPool& pool,
            const MatmulOptions& opt) {
  const TensorView* ws[1] = {&w};
  float* ys[1] = {y};
  matmul_group(ws, ys, 1, x, n_tok, pool, opt);
}

}  // namespace detail

void matmul(const TensorView& w, const float* x, int64_t n_tok, float* y, cpu::ThreadPool& pool) {
  detail::matmul(w, x, n_tok, y, pool, detail::MatmulOptions{});
}

void matmul_group(std::initializer_list<MatmulTarget> targets, const float* x, int64_t n_tok, cpu::ThreadPool& pool) {
  const TensorView* ws[detail::kMaxGroup];
  float* ys[detail::kMaxGroup];
  int n = 0;
  for (const MatmulTarget& t : targets) {
    if (n == detail::kMaxGroup) throw InvalidArgument("[ops] matmul_group: more than 4 weights");
    ws[n] = t.w;
    ys[n++] = t.y;
  }
  detail::matmul_group(ws, ys, n, x, n_tok, pool, detail::MatmulOptions{});
}

void get_rows(const TensorView& w, const int32_t* ids, int64_t n, float* out) {
  ref::get_rows(w, ids, n, out);
}

void dequantize_row(DType t, const void* src, float* out, int64_t n) {
  ref::dequantize_row(t, src, out, n);
}

}  // namespace akvq::ops
