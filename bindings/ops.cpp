// Test hooks for the op layer: dequantize raw GGUF blocks and run the CPU matmul on raw weights,
// so pytest can compare them with the gguf package's numpy codecs.
#include <akvq/error.h>
#include <nanobind/ndarray.h>

#include <string>

#include "api/limits.h"
#include "common.h"
#include "core/dtype.h"
#include "cpu/thread_pool.h"
#include "ops/matmul_detail.h"
#include "ops/ops.h"

namespace akvq::bind {

namespace {

using U8Array = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using F32In = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;

nb::ndarray<nb::numpy, float> new_f32(size_t ndim, const size_t* shape, float** data) {
  size_t n = 1;
  for (size_t i = 0; i < ndim; ++i) n *= shape[i];
  float* buf = new float[n > 0 ? n : 1];
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
  *data = buf;
  return nb::ndarray<nb::numpy, float>(buf, ndim, shape, owner);
}

DType checked_type(uint32_t type_id) {
  if (!dtype_info(type_id)) {
    throw InvalidArgument(std::string("[ops] unsupported ggml type ") + dtype_name(type_id));
  }
  return static_cast<DType>(type_id);
}

void check_size(const U8Array& raw, DType t, int64_t n_values, const char* what) {
  const DTypeInfo& info = dtype_info(t);
  if (n_values < 0 || n_values % info.block != 0) {
    throw InvalidArgument(std::string("[ops] ") + what + ": " + std::to_string(n_values) +
                          " is not a multiple of the " + info.name + " block size");
  }
  const size_t need = static_cast<size_t>(n_values / info.block) * info.block_bytes;
  if (raw.shape(0) != need) {
    throw InvalidArgument(std::string("[ops] ") + what + ": expected " + std::to_string(need) +
                          " bytes of " + info.name + ", got " + std::to_string(raw.shape(0)));
  }
}

}  // namespace

void init_ops(nb::module_& m) {
  m.def(
      "dequantize",
      [](U8Array raw, uint32_t type_id, int64_t n) {
        const DType t = checked_type(type_id);
        check_size(raw, t, n, "dequantize");
        const size_t shape[1] = {static_cast<size_t>(n)};
        float* out;
        auto arr = new_f32(1, shape, &out);
        {
          nb::gil_scoped_release nogil;
          ops::dequantize_row(t, raw.data(), out, n);
        }
        return arr;
      },
      nb::arg("raw"), nb::arg("type_id"), nb::arg("n"),
      "Dequantize n values of raw ggml type `type_id` (uint8 array) to float32.");

  m.def(
      "matmul_test",
      [](U8Array raw_w, uint32_t type_id, int64_t n_in, int64_t n_out, F32In x, int n_threads,
         bool simd) {
        const DType t = checked_type(type_id);
        check_size(raw_w, t, n_in * n_out, "matmul_test");
        if (n_in <= 0 || n_out <= 0 || n_in % dtype_info(t).block != 0) {
          throw InvalidArgument("[ops] matmul_test: bad shape");
        }
        if (x.size() % static_cast<size_t>(n_in) != 0) {
          throw InvalidArgument("[ops] matmul_test: x has " + std::to_string(x.size()) +
                                " values, not a multiple of n_in=" + std::to_string(n_in));
        }
        limits::check_range("ops", "matmul_test n_threads", n_threads, 1, limits::kMaxThreads);
        const int64_t n_tok = static_cast<int64_t>(x.size()) / n_in;
        TensorView w;
        w.name = "matmul_test";
        w.type = t;
        w.n_dims = 2;
        w.ne[0] = n_in;
        w.ne[1] = n_out;
        w.data = raw_w.data();
        w.nbytes = raw_w.shape(0);
        const size_t shape[2] = {static_cast<size_t>(n_tok), static_cast<size_t>(n_out)};
        float* y;
        auto arr = new_f32(2, shape, &y);
        {
          nb::gil_scoped_release nogil;
          cpu::ThreadPool pool(n_threads);
          ops::detail::MatmulOptions opt;
          opt.simd = simd;
          ops::detail::matmul(w, x.data(), n_tok, y, pool, opt);
        }
        return arr;
      },
      nb::arg("raw_w"), nb::arg("type_id"), nb::arg("n_in"), nb::arg("n_out"), nb::arg("x"),
      nb::arg("n_threads") = 2, nb::arg("simd") = true,
      "y[n_tok, n_out] = x[n_tok, n_in] @ dequant(W).T with W raw ggml rows (n_out rows of n_in).");
}

}  // namespace akvq::bind
