// Packed per-token group quantization for the AKVQ cache, and the attention kernels that work on
// the packed rows directly (no dequantized copy).
//
// A row holds n values (one token of one KV head, usually already WHT-rotated) split into
// n_groups = n / G groups of G consecutive values. Every group g is stored as
//     x̂ᵢ = offset_g + scale_g · L[codeᵢ]          (i in group g)
// with fp16 scale_g and offset_g and b-bit codes; L is the spec's level table:
//   Uniform  (asymmetric min/max RTN): L[c] = c, range [lo, hi] = clip·[min, max] of the group,
//            scale = (hi − lo) / (2ᵇ − 1), offset = lo, code = clamp(round((x − lo) / scale)).
//            (round half to even; scale and lo are rounded to fp16 before the codes are taken).
//   Gaussian (Lloyd–Max levels for N(0,1), b <= 4): L = the optimal b-bit codebook of a standard
//            normal, offset = group mean, scale = clip · group std (population), code = nearest
//            level of (x − offset) / scale.
// A constant group (max == min) stores scale 0 and offset = the value (exact up to fp16).
//
// Row layout (bytes_per_row(spec, n) = 4·n_groups + n·b/8, no padding, any alignment):
//   [n_groups × {fp16 scale, fp16 offset}]  then the codes of group 0, group 1, ...
// Codes are one LSB-first bit stream: value j of a row occupies bits [b·j, b·j + b) of the code
// bytes, so every 8 values take exactly b bytes (2-bit: 4 per byte, 3-bit: 8 in 3 bytes,
// 4-bit: low nibble first). G must be a multiple of 8.
//
// Attention on packed rows, for a (rotated) query q̃[n]:
//   score_t = q̃·x̂_t = Σ_g ( scale_g · Σ_{i∈g} q̃ᵢ·L[codeᵢ] + offset_g · Σ_{i∈g} q̃ᵢ )
// where Σ_{i∈g} q̃ᵢ is computed once per query (query_group_sums). Value accumulation
//   acc[i] += Σ_t p_t · x̂_t[i] = Σ_t (p_t·scale_g)·L[codeᵢ] + Σ_t p_t·offset_g.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "cpu/prefetch.h"

namespace akvq::kv {

enum class Levels { Uniform, Gaussian };

struct QuantSpec {
  int bits = 2;       // 2, 3, 4 or 8 (Gaussian: 2, 3 or 4)
  int group = 0;      // values per group, a multiple of 8 dividing n; 0 = default
  float clip = 1.0f;  // finite > 0; Uniform: range = clip·[min, max], Gaussian:
                      // scale = clip·std (usually <= 1 for Uniform)
  Levels levels = Levels::Uniform;
  // 2-bit rows of one group (group == n, n a multiple of 64 up to 256): score them from 8-bit pair
  // tables (ref::scores_lut) where the build has the table kernels (AVX2, which AVX-512 machines
  // run too, NEON); false: the exact float products everywhere. Changes no stored byte.
  bool lut = false;
  // 2- and 4-bit V rows on a CPU that runs the AVX-512 kernels (RowCodec::avx512): accumulate the products
  // p·scale·L from bf16 pairs (vdpbf16ps, fp32 sums; two rows per instruction) instead of fp32 FMAs.
  // p·scale and the levels are rounded to bf16 (8 significant bits: relative error <= 2^-8 each,
  // against the codes' own RMS error of ~0.34 (2-bit) or ~0.1 (4-bit) of a group's std; FlashAttention rounds P to
  // 16 bits for its P·V product too); the offsets' sums stay fp32. Changes no stored byte.
  bool pv_bf16 = false;

  // Throws InvalidArgument naming the field ("bits", "group", "clip", "levels") when the spec
  // cannot quantize rows of n values (n = head_dim).
  void validate(int n) const;
  // The group size used for rows of n values: `group`, or when 0 the default = the largest
  // multiple of 8 that divides n and is <= 128 (n itself when n <= 128).
  int group_size(int n) const;
};

// "uniform" / "gaussian" (case-sensitive); throws InvalidArgument naming "levels" otherwise.
Levels parse_levels(const std::string& s);
const char* levels_name(Levels l);

// The level table L[2^bits] of a spec (Uniform: 0, 1, ..., 2^b − 1; Gaussian: the Lloyd–Max
// codebook of N(0,1), ascending, computed once by Lloyd iteration in double precision).
const float* level_table(int bits, Levels levels);

size_t bytes_per_row(const QuantSpec& spec, int n);

// out[bytes_per_row] = packed x[n].
void quantize_row(const QuantSpec& spec, const float* x, int n, uint8_t* out);
// out[n] = x̂ of the packed row.
void dequantize_row(const QuantSpec& spec, const uint8_t* row, int n, float* out);

// Byte spans to request into the cache while rows are scored or accumulated (no effect on any
// value): the attention asks for K and V rows ahead of the kernels (the plan: QuantKvCache::attend,
// kv_quant_attend.cpp). The table scores and the x86 accumulate kernels spread the requests over
// their rows (each span in proportion to the rows done), so the loads overlap the arithmetic; the
// other kernels get them requested at the start of the call. SmolLM2 shape, one sequence of 8192
// tokens, 30 layers, akvq2 decode attention on a Zen 5: 6.0 -> 4.9 ms per step against the whole
// spans at the start of each block (bench/RESULTS.md).
struct RowsAhead {
  const uint8_t* p[2] = {nullptr, nullptr};
  size_t n[2] = {0, 0};
};
// The cache lines [first, end) (addresses, first 64-byte aligned) of span s of a that fall to rows
// [t0, t1) of n_rows: span bytes in proportion to the rows. Over t0 = 0, k, 2k, ... up to n_rows they
// cover the span's every line and no byte outside the lines it touches.
inline void ahead_lines(const RowsAhead& a, int s, int64_t t0, int64_t t1, int64_t n_rows, uintptr_t& first,
                        uintptr_t& end) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(a.p[s]);
  first = (base + a.n[s] * static_cast<size_t>(t0) / static_cast<size_t>(n_rows)) & ~uintptr_t{63};
  end = base + a.n[s] * static_cast<size_t>(t1) / static_cast<size_t>(n_rows);
}
// Requests those lines of both spans (a may be nullptr: nothing).
inline void request_ahead(const RowsAhead* a, int64_t t0, int64_t t1, int64_t n_rows) {
  if (a == nullptr || n_rows <= 0) return;
  for (int s = 0; s < 2; ++s) {
    if (a->p[s] == nullptr || a->n[s] == 0) continue;
    uintptr_t x, end;
    ahead_lines(*a, s, t0, t1, n_rows, x, end);
    for (; x < end; x += 64) cpu::prefetch_line(reinterpret_cast<const void*>(x));
  }
}

// One query's tables for the table scores, built once (RowCodec::lut_prepare) and reused by every
// call that scores rows for that query (decode scores all blocks of a head's rows with the same
// query): the same scores bit for bit as tables built inside the call.
struct LutQuery {
  const void* tab = nullptr;  // RowCodec::lut_query_bytes() bytes, 32-byte aligned
  float s = 0.0f;             // the entries' scale (ref::scores_lut)
};

// A validated spec bound to a row length, with the kernels chosen once (use this in hot loops;
// the free functions above and below build one per call). Cheap to copy.
constexpr int kMaxQueries = 4;  // queries per call of RowCodec::scores_multi / accumulate_multi

class RowCodec {
 public:
  RowCodec(const QuantSpec& spec, int n);  // validates

  const QuantSpec& spec() const { return spec_; }
  int n() const { return n_; }
  int group() const { return group_; }
  int n_groups() const { return n_ / group_; }
  size_t row_bytes() const { return row_bytes_; }
  const float* levels() const { return levels_; }

  void quantize(const float* x, uint8_t* out) const;  // x[n] -> out[row_bytes]
  // n_rows rows: x + r·x_stride (floats), out + r·out_stride (bytes).
  void quantize_rows(const float* x, int64_t x_stride, int64_t n_rows, uint8_t* out, size_t out_stride) const;
  void dequantize(const uint8_t* row, float* out) const;  // row -> out[n]

  // qsum[n_groups] = per-group sums of q[n] (once per query, for scores()).
  void query_group_sums(const float* q, float* qsum) const;
  // out[t] = q · x̂_t for the n_rows packed rows at rows + t·stride (bytes), t in [0, n_rows).
  void scores(const float* q, const float* qsum, const uint8_t* rows, size_t stride, int64_t n_rows, float* out) const;
  // acc[n] += Σ_t p[t] · x̂_t over the same kind of rows.
  void accumulate(const float* p, const uint8_t* rows, size_t stride, int64_t n_rows, float* acc) const;

  // The same for nq <= kMaxQueries queries at once (each chunk of codes is expanded once for all):
  // query j is q + j·q_stride with sums qsum + j·qsum_stride, its scores go to out + j·out_stride.
  // ahead: spans requested into the cache meanwhile (RowsAhead), or nullptr. pre: with
  // lut_scores(), the nq queries' tables from lut_prepare (q still gives nothing else then), or nullptr.
  void scores_multi(const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                    const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                    const RowsAhead* ahead = nullptr, const LutQuery* pre = nullptr) const;
  // With lut_scores(): the tables of query q[n] into tab (lut_query_bytes(), 32-byte aligned).
  size_t lut_query_bytes() const;
  LutQuery lut_prepare(const float* q, void* tab) const;
  // acc + j·acc_stride [n] += Σ_t (p + j·p_stride)[t] · x̂_t for j < nq <= kMaxQueries. `ahead`:
  // spans to request meanwhile (the x86 kernels spread them over their rows, the others request
  // them at the start).
  void accumulate_multi(const float* p, size_t p_stride, int nq, const uint8_t* rows, size_t stride, int64_t n_rows,
                        float* acc, size_t acc_stride, const RowsAhead* ahead = nullptr) const;

  // Whether the SIMD kernels serve this spec (false: scalar reference kernels).
  bool simd() const { return simd_; }
  // Whether the AVX-512 attention kernels serve it (chosen once here, from cpu::active_isa()); its
  // scores still come from the tables when lut_scores().
  bool avx512() const { return wide_; }
  // Whether scores come from 8-bit pair tables (spec.lut, and ref::scores_lut's rows on a CPU with
  // the table kernels: AVX2, AVX-512 or NEON) instead of the float kernels' exact products.
  bool lut_scores() const { return lut_; }
  // Whether the table scores run 64 rows per block (AVX-512: simd512::scores_lut, the same bits).
  bool lut_avx512() const { return lut_wide_; }
  // Whether accumulate / accumulate_multi take the products from bf16 pairs (spec.pv_bf16 on a
  // spec that the AVX-512 kernels serve: 2 or 4 bits); false: fp32 products everywhere.
  bool pv_bf16() const { return wide_ && spec_.pv_bf16; }

 private:
  QuantSpec spec_;
  int n_ = 0;
  int group_ = 0;
  size_t row_bytes_ = 0;
  const float* levels_ = nullptr;
  bool simd_ = false;
  bool wide_ = false;
  bool lut_ = false;
  bool lut_wide_ = false;
};

// Free-function forms of the attention kernels (validate, then dispatch like RowCodec).
void query_group_sums(const QuantSpec& spec, const float* q, int n, float* qsum);
void scores_rows(const QuantSpec& spec, const float* q, const float* qsum, int n, const uint8_t* rows, size_t stride,
                 int64_t n_rows, float* out);
void accumulate_rows(const QuantSpec& spec, const float* p, const uint8_t* rows, size_t stride, int64_t n_rows, int n,
                     float* acc);

// Scalar references of every kernel (used by the parity tests and as the fallback). They take a
// validated spec, resolved group size and level table.
namespace ref {
// fp16 scale and offset of one group (constant group: scale 0, offset = the value). Shared by the
// SIMD quantizer, so both write the same headers.
struct GroupHeader {
  uint16_t scale = 0, offset = 0;
};
GroupHeader group_header(const QuantSpec& spec, const float* xg, int group);
void quantize_row(const QuantSpec& spec, int group, const float* levels, const float* x, int n, uint8_t* out);
void dequantize_row(const QuantSpec& spec, int group, const float* levels, const uint8_t* row, int n, float* out);
void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out);
void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc);
// Scores of 2-bit rows of one group (group == n, n a multiple of 64) from 8-bit pair tables, the
// AVX2 kernels' arithmetic (simd::scores_lut), for one query q[n] with group sum qsum:
//   m = (L[0] + L[3]) / 2, L'[c] = L[c] − m (centred levels; exact for both 2-bit tables),
//   T(p, i) = fma(q[2p+1], L'[i >> 2], q[2p]·L'[i & 3])  for pairs p < n/2 and nibbles i < 16,
//   s = A / 127 and T8(p, i) = nearbyint(T(p, i) · (127 / A)) with A = max |T| (s = T8 = 0 if an
//   entry is NaN, or unless A > 0 and A, 127/A are finite: simd::lut_scale_usable),
//   I_t = Σ_p T8(p, nibble p of row t)   (nibble p = values 2p, 2p+1: bits [4p, 4p + 4) of the codes),
//   out[t] = fma(scale_t, fma(float(I_t), s, m·qsum), offset_t·qsum).
// So out[t] = q·x̂_t up to the tables' rounding: |error| <= scale_t · s · n/4 (n/2 entries, each
// off by at most s/2), about 1/250 of max |T| per pair: the score of a row depends on its codes,
// its header and q only, never on the other rows.
void scores_lut(const float* levels, const float* q, float qsum, int n, const uint8_t* rows, size_t stride,
                int64_t n_rows, float* out);
// Code j (0 <= j < n) of a packed row's code stream.
inline unsigned code_at(const uint8_t* codes, int bits, int j) {
  const int bit = bits * j;
  unsigned w = codes[bit >> 3];
  if ((bit & 7) + bits > 8) w |= static_cast<unsigned>(codes[(bit >> 3) + 1]) << 8;
  return (w >> (bit & 7)) & ((1u << bits) - 1);
}
}  // namespace ref

// SIMD kernels (quant_avx2.cpp on x86-64, quant_neon.cpp on 64-bit ARM: 2- and 4-bit only);
// `available` says whether this build has them for the spec.
namespace simd {
constexpr int kMaxRow = 1024;  // longest row the SIMD kernels serve (longer rows use the references)
constexpr int kMaxLutRow = 256;  // longest row of the table scores (int16 sums of n/2 entries)
bool available(const QuantSpec& spec, int group);
void scores(const QuantSpec& spec, int group, const float* levels, const float* q, const float* qsum, int n,
            const uint8_t* rows, size_t stride, int64_t n_rows, float* out);
void accumulate(const QuantSpec& spec, int group, const float* levels, const float* p, const uint8_t* rows,
                size_t stride, int64_t n_rows, int n, float* acc);
// Bit-identical to ref::quantize_row (n_rows rows, x + r·x_stride floats -> out + r·out_stride).
void quantize_rows(const QuantSpec& spec, int group, const float* levels, const float* x, int64_t x_stride,
                   int64_t n_rows, int n, uint8_t* out, size_t out_stride);
// nq <= kMaxQueries queries / weight vectors at once (strides in floats).
void scores_multi(const QuantSpec& spec, int group, const float* levels, const float* q, size_t q_stride,
                  const float* qsum, size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride,
                  int64_t n_rows, float* out, size_t out_stride);
void accumulate_multi(const QuantSpec& spec, int group, const float* levels, const float* p, size_t p_stride, int nq,
                      const uint8_t* rows, size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                      const RowsAhead* ahead = nullptr);
// Table scores (ref::scores_lut's arithmetic, bit for bit; quant_lut_avx2.cpp, quant_lut_neon.cpp)
// for 2-bit rows of one group, n a multiple of 64 up to kMaxLutRow; `lut_available` says whether
// this build has them for the spec. nq <= kMaxQueries queries as scores_multi.
bool lut_available(const QuantSpec& spec, int group, int n);
// The table kernels' helpers (shared by both ISAs and ref::scores_lut):
// lc[4] = the centred 2-bit levels L[c] − m; returns m = (L[0] + L[3]) / 2.
inline float centred_levels(const float* levels, float* lc) {
  const float m = 0.5f * (levels[0] + levels[3]);
  for (int c = 0; c < 4; ++c) lc[c] = levels[c] - m;
  return m;
}
// Whether the largest table entry A gives usable tables: A > 0 and both A and 127/A finite (else
// every entry and the scale are 0: a zero, tiny or infinite query; so are they when an entry is
// NaN, and the NaN stays in qsum). A NaN A is not usable.
inline bool lut_scale_usable(float a) {
  return a > 0.0f && a <= 3.4e38f && 127.0f / a <= 3.4e38f;
}
// The block of `block` rows at row t: the rows themselves (stride), or, for a last block of fewer,
// copies of them in the zeroed pad[block · (4 + n/4)] (stride 4 + n/4). Returns its row count.
inline int lut_block(const uint8_t* rows, size_t stride, int64_t t, int64_t n_rows, int block, int n, uint8_t* pad,
                     const uint8_t*& r0, size_t& rst) {
  const int nr = static_cast<int>(n_rows - t < block ? n_rows - t : block);
  r0 = rows + t * stride, rst = stride;
  if (nr < block) {
    const size_t prb = 4 + static_cast<size_t>(n) / 4;
    std::memset(pad, 0, block * prb);
    for (int u = 0; u < nr; ++u) std::memcpy(pad + u * prb, r0 + u * stride, prb);
    r0 = pad, rst = prb;
  }
  return nr;
}
void scores_lut(const float* levels, const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                const RowsAhead* ahead = nullptr, const LutQuery* pre = nullptr);
// The per-query values of a table kernel's call, for NQ queries: qs[j] = qsum[j·qsst], base[j] =
// mid·qs[j], and the tables tab[j] with their scale s[j]: pre[j]'s when pre is given, else built
// by build(j, own + j·(n/2)) (which returns the scale) into own[NQ·n/2]. The sums come first, the
// tables in a loop of their own: with both in one loop and this branch inside it, the
// AddressSanitizer build (GCC 12, -O2) scored query 0 with query 1's mid·qsum (bench/RESULTS.md).
template <int NQ, class T, class Build>
inline void lut_queries(float mid, const float* qsum, size_t qsst, const LutQuery* pre, int n, T* own, Build build,
                        const T** tab, float* s, float* base, float* qs) {
  for (int j = 0; j < NQ; ++j) {
    qs[j] = qsum[j * qsst];
    base[j] = mid * qs[j];
  }
  if (pre) {
    for (int j = 0; j < NQ; ++j) tab[j] = static_cast<const T*>(pre[j].tab), s[j] = pre[j].s;
  } else {
    for (int j = 0; j < NQ; ++j) {
      s[j] = build(j, own + j * (n / 2));
      tab[j] = own + j * (n / 2);
    }
  }
}
// The tables of one query in the table kernels' format (AVX2: 32 bytes per pair, NEON: 16), for
// LutQuery: lut_query_bytes(n) bytes at tab (32-byte aligned); returns their scale.
size_t lut_query_bytes(int n);
float lut_prepare(const float* levels, const float* q, int n, void* tab);
// The tables of one query q[n] (AVX2 builds only; quant_lut_avx2.cpp): tab[p] = 32 bytes, the 16
// int8 entries T8(p, i) of pair p (ref::scores_lut) in both halves, p < n/2; tmp: 8·n floats of
// scratch. Returns the entries' scale s (0, with zero tables, unless lut_scale_usable).
float lut_tables(const float* q, int n, const float* lc, void* tab, float* tmp);
}  // namespace simd

// AVX-512 attention kernels (quant_avx512.cpp) for 2-bit and 4-bit rows, uniform or Gaussian
// levels, groups of a multiple of 16 values; `available` is false when the build has no AVX-512 kernels (the
// CPU's support is RowCodec's check). Same contracts as the simd:: multi kernels.
namespace simd512 {
bool available(const QuantSpec& spec, int group, int n);
void scores_multi(const QuantSpec& spec, int group, const float* levels, const float* q, size_t q_stride,
                  const float* qsum, size_t qsum_stride, int nq, int n, const uint8_t* rows, size_t stride,
                  int64_t n_rows, float* out, size_t out_stride);
void accumulate_multi(const QuantSpec& spec, int group, const float* levels, const float* p, size_t p_stride, int nq,
                      const uint8_t* rows, size_t stride, int64_t n_rows, int n, float* acc, size_t acc_stride,
                      const RowsAhead* ahead = nullptr);
// simd::scores_lut with 64 rows per block (quant_lut_avx512.cpp): the same results bit for bit
// (simd::scores_lut itself in a build without AVX-512 table kernels).
void scores_lut(const float* levels, const float* q, size_t q_stride, const float* qsum, size_t qsum_stride, int nq,
                int n, const uint8_t* rows, size_t stride, int64_t n_rows, float* out, size_t out_stride,
                const RowsAhead* ahead = nullptr, const LutQuery* pre = nullptr);
}  // namespace simd512

}  // namespace akvq::kv
