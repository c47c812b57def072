// Weight binding shared by the architectures (see weights.h).
#include "models/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "akvq/error.h"
#include "gguf/gguf.h"
#include "core/fp16.h"
#include "ops/ops.h"

namespace akvq::models {

std::string shape_str(const TensorView& t) {
  std::string s = "{";
  for (int i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
  return s + "}";
}

namespace {

const TensorView& find_checked(const gguf::File& f, const std::string& tag, const std::string& name) {
  const TensorView* t = f.find_tensor(name);
  if (!t) throw FormatError(tag + " tensor '" + name + "' is missing");
  if (!dtype_info(static_cast<uint32_t>(t->type))) {
    throw FormatError(tag + " tensor '" + name + "' has unsupported type " +
                      dtype_name(static_cast<uint32_t>(t->type)));
  }
  const DTypeInfo& info = dtype_info(t->type);
  if (t->ne[0] % info.block != 0) {
    throw FormatError(tag + " tensor '" + name + "': row length " + std::to_string(t->ne[0]) +
                      " is not a multiple of the " + info.name + " block size");
  }
  if (!t->data || t->nbytes < static_cast<size_t>(t->rows()) * t->row_bytes()) {
    throw FormatError(tag + " tensor '" + name + "': data is missing or too short");
  }
  return *t;
}

}  // namespace

TensorView bind_tensor(const gguf::File& f, const std::string& tag, const std::string& name,
                       std::initializer_list<int64_t> ne, bool f32_only, bool load_only_ok) {
  const TensorView* t = f.find_tensor(name);
  if (!t) throw FormatError(tag + " tensor '" + name + "' is missing");
  std::string want = "{";
  for (int64_t d : ne) want += (want.size() > 1 ? ", " : "") + std::to_string(d);
  want += "}";
  bool ok = t->n_dims == static_cast<int>(ne.size());
  int i = 0;
  for (int64_t d : ne) ok = ok && t->ne[i++] == d;
  for (; ok && i < 4; ++i) ok = t->ne[i] == 1;
  if (!ok) throw FormatError(tag + " tensor '" + name + "' has shape " + shape_str(*t) + ", expected " + want);
  if (f32_only && t->type != DType::F32) {
    throw FormatError(tag + " tensor '" + name + "' has type " + dtype_name(static_cast<uint32_t>(t->type)) +
                      ", expected F32");
  }
  const TensorView& t2 = find_checked(f, tag, name);
  if (!load_only_ok && dtype_info(t2.type).load_only) {
    throw FormatError(tag + " tensor '" + name + "' has type " + dtype_name(static_cast<uint32_t>(t2.type)) +
                      ", which this part of the model cannot use");
  }
  return t2;
}

void requantize_q8_0(TensorView& w, std::vector<uint8_t>& store) {
  if (!dtype_info(w.type).load_only) return;
  const int64_t n = w.ne[0], rows = w.rows();
  const size_t out_row = row_bytes(DType::Q8_0, n);  // n is a multiple of 32 (all load-only blocks are)
  store.assign(out_row * static_cast<size_t>(rows), 0);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    ops::dequantize_row(w.type, w.row(r), x.data(), n);
    uint8_t* o = store.data() + r * out_row;
    for (int64_t b = 0; b < n / 32; ++b, o += 34) {
      const float* xb = x.data() + b * 32;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
      const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
      const uint16_t dh = f32_to_fp16(d);
      std::memcpy(o, &dh, 2);
      for (int i = 0; i < 32; ++i) {  // halves away from zero, as ggml's roundf
        o[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(xb[i] * id)));
      }
    }
  }
  w.type = DType::Q8_0;
  w.data = store.data();
  w.nbytes = store.size();
}

std::vector<float> load_f32(const gguf::File& f, const std::string& tag, const std::string& name, int64_t n) {
  const TensorView& t = find_checked(f, tag, name);
  if (t.nelements() != n) {
    throw FormatError(tag + " tensor '" + name + "' has shape " + shape_str(t) + " (" + std::to_string(t.nelements()) +
                      " values), expected " + std::to_string(n) + " values");
  }
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t r = 0; r < t.rows(); ++r) ops::dequantize_row(t.type, t.row(r), out.data() + r * t.ne[0], t.ne[0]);
  return out;
}

}  // namespace akvq::models
