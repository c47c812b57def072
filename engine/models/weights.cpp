// Weight binding shared by the architectures (see weights.h).
#include "models/weights.h"

#include <string>

#include "akvq/error.h"
#include "gguf/gguf.h"
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
                       std::initializer_list<int64_t> ne, bool f32_only) {
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
  return find_checked(f, tag, name);
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
