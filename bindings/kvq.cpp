// Test hooks for the AKVQ cache building blocks: WHT, packed per-token group quantization and
// the attention kernels on packed rows, so pytest can compare them with numpy formulas.
#include <akvq/error.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <string>
#include <vector>

#include "common.h"
#include "kv/quant.h"
#include "kv/wht.h"

namespace akvq::bind {

namespace {

using F32In = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using U8In = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;

template <class T>
nb::ndarray<nb::numpy, T> new_array(size_t ndim, const size_t* shape, T** data) {
  size_t n = 1;
  for (size_t i = 0; i < ndim; ++i) n *= shape[i];
  T* buf = new T[n > 0 ? n : 1]();
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  *data = buf;
  return nb::ndarray<nb::numpy, T>(buf, ndim, shape, owner);
}

kv::QuantSpec make_spec(int bits, int group, float clip, const std::string& levels) {
  kv::QuantSpec s;
  s.bits = bits;
  s.group = group;
  s.clip = clip;
  s.levels = kv::parse_levels(levels);
  return s;
}

// Rows of a packed array: [n_rows, row_bytes] (or one row [row_bytes]).
size_t packed_rows(const U8In& codes, size_t row_bytes, const char* what) {
  const size_t rb = codes.ndim() == 0 ? 0 : codes.shape(codes.ndim() - 1);
  if (codes.ndim() < 1 || codes.ndim() > 2 || rb != row_bytes) {
    throw InvalidArgument(std::string("[kv] ") + what + ": packed rows must be [n_rows, " + std::to_string(row_bytes) +
                          "] uint8");
  }
  return codes.ndim() == 2 ? codes.shape(0) : 1;
}

}  // namespace

void init_kvq(nb::module_& m) {
  m.def(
      "kv_wht",
      [](F32In x) {
        if (x.ndim() < 1 || x.shape(x.ndim() - 1) < 1)
          throw InvalidArgument("[kv] kv_wht: x must have a last dimension >= 1");
        std::vector<size_t> shape(x.ndim());
        for (size_t i = 0; i < x.ndim(); ++i) shape[i] = x.shape(i);
        const int d = static_cast<int>(shape.back());
        float* y;
        auto arr = new_array<float>(shape.size(), shape.data(), &y);
        {
          nb::gil_scoped_release nogil;
          std::copy(x.data(), x.data() + x.size(), y);
          kv::wht_rows(y, static_cast<int64_t>(x.size() / d), d);
        }
        return arr;
      },
      nb::arg("x"), "Normalized (block-diagonal) Walsh–Hadamard transform over the last axis.");

  m.def(
      "kv_row_bytes",
      [](int n, int bits, int group, float clip, const std::string& levels) {
        return kv::bytes_per_row(make_spec(bits, group, clip, levels), n);
      },
      nb::arg("n"), nb::arg("bits"), nb::arg("group") = 0, nb::arg("clip") = 1.0f, nb::arg("levels") = "uniform",
      "Bytes of one packed row of n values.");

  m.def(
      "kv_levels",
      [](int bits, const std::string& levels) {
        const float* t = kv::level_table(bits, kv::parse_levels(levels));
        const size_t shape[1] = {static_cast<size_t>(1) << bits};
        float* y;
        auto arr = new_array<float>(1, shape, &y);
        std::copy(t, t + shape[0], y);
        return arr;
      },
      nb::arg("bits"), nb::arg("levels") = "uniform", "The level table L[2^bits] of a spec.");

  m.def(
      "kv_quantize",
      [](F32In x, int bits, int group, float clip, const std::string& levels) {
        if (x.ndim() < 1 || x.ndim() > 2) throw InvalidArgument("[kv] kv_quantize: x must be [n] or [n_rows, n]");
        const int n = static_cast<int>(x.shape(x.ndim() - 1));
        const size_t n_rows = x.ndim() == 2 ? x.shape(0) : 1;
        const kv::RowCodec codec(make_spec(bits, group, clip, levels), n);
        const size_t shape[2] = {n_rows, codec.row_bytes()};
        uint8_t* out;
        auto arr = new_array<uint8_t>(2, shape, &out);
        {
          nb::gil_scoped_release nogil;
          codec.quantize_rows(x.data(), n, static_cast<int64_t>(n_rows), out, codec.row_bytes());
        }
        return arr;
      },
      nb::arg("x"), nb::arg("bits"), nb::arg("group") = 0, nb::arg("clip") = 1.0f, nb::arg("levels") = "uniform",
      "Packed rows uint8[n_rows, row_bytes] of x[n_rows, n] (float32).");

  m.def(
      "kv_dequantize",
      [](U8In codes, int n, int bits, int group, float clip, const std::string& levels) {
        const kv::RowCodec codec(make_spec(bits, group, clip, levels), n);
        const size_t n_rows = packed_rows(codes, codec.row_bytes(), "kv_dequantize");
        const size_t shape[2] = {n_rows, static_cast<size_t>(n)};
        float* out;
        auto arr = new_array<float>(2, shape, &out);
        {
          nb::gil_scoped_release nogil;
          for (size_t r = 0; r < n_rows; ++r) codec.dequantize(codes.data() + r * codec.row_bytes(), out + r * n);
        }
        return arr;
      },
      nb::arg("codes"), nb::arg("n"), nb::arg("bits"), nb::arg("group") = 0, nb::arg("clip") = 1.0f,
      nb::arg("levels") = "uniform", "x̂[n_rows, n] (float32) of packed rows.");

  m.def(
      "kv_scores",
      [](F32In q, U8In codes, int bits, int group, const std::string& levels, bool simd) {
        if (q.ndim() != 1) throw InvalidArgument("[kv] kv_scores: q must be [n]");
        const int n = static_cast<int>(q.shape(0));
        const kv::RowCodec codec(make_spec(bits, group, 1.0f, levels), n);
        const size_t n_rows = packed_rows(codes, codec.row_bytes(), "kv_scores");
        const size_t shape[1] = {n_rows};
        float* out;
        auto arr = new_array<float>(1, shape, &out);
        {
          nb::gil_scoped_release nogil;
          std::vector<float> qsum(codec.n_groups());
          codec.query_group_sums(q.data(), qsum.data());
          if (simd) {
            codec.scores(q.data(), qsum.data(), codes.data(), codec.row_bytes(), static_cast<int64_t>(n_rows), out);
          } else {
            kv::ref::scores(codec.spec(), codec.group(), codec.levels(), q.data(), qsum.data(), n, codes.data(),
                            codec.row_bytes(), static_cast<int64_t>(n_rows), out);
          }
        }
        return arr;
      },
      nb::arg("q"), nb::arg("codes"), nb::arg("bits"), nb::arg("group") = 0, nb::arg("levels") = "uniform",
      nb::arg("simd") = true, "scores[n_rows] = q · x̂_t computed on the packed rows.");

  m.def(
      "kv_accumulate",
      [](F32In p, U8In codes, int n, int bits, int group, const std::string& levels, bool simd) {
        if (p.ndim() != 1) throw InvalidArgument("[kv] kv_accumulate: p must be [n_rows]");
        const kv::RowCodec codec(make_spec(bits, group, 1.0f, levels), n);
        const size_t n_rows = packed_rows(codes, codec.row_bytes(), "kv_accumulate");
        if (p.shape(0) != n_rows)
          throw InvalidArgument("[kv] kv_accumulate: p has " + std::to_string(p.shape(0)) + " weights for " +
                                std::to_string(n_rows) + " rows");
        const size_t shape[1] = {static_cast<size_t>(n)};
        float* out;
        auto arr = new_array<float>(1, shape, &out);
        {
          nb::gil_scoped_release nogil;
          if (simd) {
            codec.accumulate(p.data(), codes.data(), codec.row_bytes(), static_cast<int64_t>(n_rows), out);
          } else {
            kv::ref::accumulate(codec.spec(), codec.group(), codec.levels(), p.data(), codes.data(), codec.row_bytes(),
                                static_cast<int64_t>(n_rows), n, out);
          }
        }
        return arr;
      },
      nb::arg("p"), nb::arg("codes"), nb::arg("n"), nb::arg("bits"), nb::arg("group") = 0,
      nb::arg("levels") = "uniform", nb::arg("simd") = true, "acc[n] = Σ_t p_t · x̂_t computed on the packed rows.");
}

}  // namespace akvq::bind
