// GGUF parsing: header, metadata and tensor infos, read through a bounds-checked cursor.
// Nothing from the file is trusted: every count is bounded by the bytes left in the file before
// anything is reserved, and every tensor's dims, type, offset and size are validated.
#include <akvq/error.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "gguf/gguf.h"

namespace akvq::gguf {
namespace {

constexpr int kMaxArrayDepth = 8;  // arrays nested deeper than this are rejected
// All metadata array elements of one file together. Each element costs sizeof(Value) (~100 bytes)
// in memory, so this caps what a small hostile file can make us allocate (~0.8 GB); real files hold
// at most a few million (vocabularies of 256k tokens with scores, types and merges).
constexpr uint64_t kMaxArrayElements = 1u << 23;
constexpr size_t kMinKvBytes = 8 + 1 + 4 + 1;              // key length, >= 1 key byte, type, 1-byte value
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name len, n_dims, one dim, type, offset

std::string hex_bytes(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

const char* value_type_name(uint32_t t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : nullptr;
}

// Names of ggml types this engine does not load, for clearer messages.
std::string ggml_type_text(uint32_t raw) {
  static const char* names[] = {"F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
                                "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
                                "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
  if (raw < sizeof(names) / sizeof(names[0])) return std::string(names[raw]) + " (" + std::to_string(raw) + ")";
  return "type " + std::to_string(raw);
}

// True when s is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    size_t len;
    unsigned cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    static const unsigned kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

// Bounds-checked little-endian reader over [base, base + size).
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& path) : base_(base), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  // What is being read, for messages: "header", "key 'general.name'", "tensor 'x'"...
  void set_context(std::string ctx) { ctx_ = std::move(ctx); }
  const std::string& context() const { return ctx_; }

  [[noreturn]] void fail(const std::string& msg) const { throw FormatError("[gguf] " + path_ + ": " + msg); }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail("truncated at offset " + std::to_string(pos_) + " while reading " + what + " of " + ctx_ + " (need " +
           std::to_string(n) + " bytes, " + std::to_string(remaining()) + " left)");
    }
  }

  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > remaining()) {
      fail(std::string(what) + " of " + ctx_ + ": string length " + std::to_string(n) + " at offset " +
           std::to_string(pos_ - 8) + " exceeds the " + std::to_string(remaining()) + " bytes left in the file");
    }
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

  // Fails unless `count` items of at least `min_bytes` each could fit in the remaining bytes.
  void check_count(uint64_t count, size_t min_bytes, const std::string& what) const {
    if (count > remaining() / min_bytes) {
      fail(what + " " + std::to_string(count) + " is impossible: the " + std::to_string(remaining()) +
           " bytes left after offset " + std::to_string(pos_) + " hold at most " +
           std::to_string(remaining() / min_bytes) + " (truncated or corrupt file)");
    }
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
  std::string ctx_ = "header";
};

// Smallest encoding of one array element of type t (for bounding counts).
size_t min_value_bytes(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
    case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 4 + 8;
  }
  return 1;
}

class MetaReader {
 public:
  explicit MetaReader(Cursor& c) : c_(c) {}

  Value read_value(uint32_t raw_type, int depth) {
    if (!value_type_name(raw_type)) c_.fail(c_.context() + ": unknown value type " + std::to_string(raw_type));
    Value v;
    v.type = static_cast<ValueType>(raw_type);
    switch (v.type) {
      case ValueType::U8: set_u(v, c_.read<uint8_t>("u8 value")); break;
      case ValueType::U16: set_u(v, c_.read<uint16_t>("u16 value")); break;
      case ValueType::U32: set_u(v, c_.read<uint32_t>("u32 value")); break;
      case ValueType::U64: set_u(v, c_.read<uint64_t>("u64 value")); break;
      case ValueType::I8: set_i(v, c_.read<int8_t>("i8 value")); break;
      case ValueType::I16: set_i(v, c_.read<int16_t>("i16 value")); break;
      case ValueType::I32: set_i(v, c_.read<int32_t>("i32 value")); break;
      case ValueType::I64: set_i(v, c_.read<int64_t>("i64 value")); break;
      case ValueType::F32: v.f = c_.read<float>("f32 value"); break;
      case ValueType::F64: v.f = c_.read<double>("f64 value"); break;
      case ValueType::BOOL: {
        const uint8_t b = c_.read<uint8_t>("bool value");
        if (b > 1) {
          c_.fail(c_.context() + ": bool value " + std::to_string(b) + " at offset " + std::to_string(c_.pos() - 1) +
                  " is neither 0 nor 1");
        }
        v.b = b != 0;
        v.i = v.b;
        v.u = v.b;
        break;
      }
      case ValueType::STRING: v.str = c_.read_string("string"); break;
      case ValueType::ARRAY: read_array(v, depth); break;
    }
    return v;
  }

 private:
  static void set_u(Value& v, uint64_t x) {
    v.u = x;
    v.i = static_cast<int64_t>(x);
    v.f = static_cast<double>(x);
  }
  static void set_i(Value& v, int64_t x) {
    v.i = x;
    v.u = static_cast<uint64_t>(x);
    v.f = static_cast<double>(x);
  }

  void read_array(Value& v, int depth) {
    if (depth >= kMaxArrayDepth) {
      c_.fail(c_.context() + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
    }
    const uint32_t et = c_.read<uint32_t>("array element type");
    if (!value_type_name(et)) c_.fail(c_.context() + ": unknown array element type " + std::to_string(et));
    v.elem_type = static_cast<ValueType>(et);
    const uint64_t n = c_.read<uint64_t>("array length");
    c_.check_count(n, min_value_bytes(v.elem_type), c_.context() + ": array length");
    total_elements_ += n;
    if (total_elements_ > kMaxArrayElements) {
      c_.fail(c_.context() + ": more than " + std::to_string(kMaxArrayElements) +
              " metadata array elements in one file");
    }
    v.arr.reserve(static_cast<size_t>(n));
    for (uint64_t k = 0; k < n; ++k) v.arr.push_back(read_value(et, depth + 1));
  }

  Cursor& c_;
  uint64_t total_elements_ = 0;
};

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

struct RawTensor {
  TensorView view;
  uint64_t offset = 0;  // relative to the data section
};

}  // namespace

void File::parse() {
  static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE types expected");
  Cursor c(base_, size_, path_);

  // ---- header ----
  c.need(4, "magic");
  if (std::memcmp(base_, "GGUF", 4) != 0) {
    c.fail("bad magic (first bytes " + hex_bytes(base_, 4) + ", expected 47 47 55 46 'GGUF'): not a GGUF file");
  }
  c.read<uint32_t>("magic");
  version_ = c.read<uint32_t>("version");
  if (version_ == 1) c.fail("unsupported version 1 (GGUF v1 used 32-bit counts; re-convert the file)");
  if (version_ != 2 && version_ != 3) {
    std::string hint;
    if (version_ == 0x02000000u || version_ == 0x03000000u) hint = " (a big-endian file?)";
    c.fail("unsupported version " + std::to_string(version_) + hint + "; versions 2 and 3 are supported");
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  c.check_count(n_tensors, kMinTensorInfoBytes, "tensor count");
  c.check_count(n_kv, kMinKvBytes, "metadata count");
  if (n_tensors * kMinTensorInfoBytes + n_kv * kMinKvBytes > c.remaining()) {
    c.fail("tensor count " + std::to_string(n_tensors) + " and metadata count " + std::to_string(n_kv) +
           " together cannot fit in the " + std::to_string(c.remaining()) + " bytes left (truncated or corrupt file)");
  }

  // ---- metadata ----
  MetaReader meta(c);
  key_order_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    c.set_context("metadata entry #" + std::to_string(k));
    const size_t key_pos = c.pos();
    std::string key = c.read_string("key");
    if (!valid_utf8(key)) {
      c.fail("metadata entry #" + std::to_string(k) + " at offset " + std::to_string(key_pos) +
             ": key is not valid UTF-8");
    }
    if (key.empty())
      c.fail("metadata entry #" + std::to_string(k) + " at offset " + std::to_string(key_pos) + " has an empty key");
    if (kv_.count(key)) c.fail("duplicate key '" + key + "' (metadata entry #" + std::to_string(k) + ")");
    c.set_context("key '" + key + "'");
    const uint32_t type = c.read<uint32_t>("value type");
    Value v = meta.read_value(type, 0);
    kv_.emplace(key, std::move(v));
    key_order_.push_back(std::move(key));
  }

  // ---- alignment ----
  alignment_ = 32;
  if (const Value* a = find("general.alignment")) {
    if (a->type != ValueType::U32) {
      c.fail(std::string("general.alignment must be a u32, got ") + value_type_name(static_cast<uint32_t>(a->type)));
    }
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) {
      c.fail("general.alignment " + std::to_string(a->u) + " is not a nonzero power of two");
    }
    alignment_ = static_cast<size_t>(a->u);
  }

  // ---- tensor infos ----
  std::vector<RawTensor> raw;
  raw.reserve(static_cast<size_t>(n_tensors));
  tensor_index_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t t = 0; t < n_tensors; ++t) {
    c.set_context("tensor info #" + std::to_string(t));
    RawTensor r;
    const size_t name_pos = c.pos();
    r.view.name = c.read_string("name");
    if (!valid_utf8(r.view.name)) {
      c.fail("tensor info #" + std::to_string(t) + " at offset " + std::to_string(name_pos) +
             ": name is not valid UTF-8");
    }
    const std::string where = "tensor '" + r.view.name + "'";
    if (!tensor_index_.emplace(r.view.name, raw.size()).second) c.fail("duplicate " + where);
    c.set_context(where);
    const uint32_t n_dims = c.read<uint32_t>("n_dims");
    if (n_dims < 1 || n_dims > 4) c.fail(where + ": n_dims " + std::to_string(n_dims) + " is not in 1..4");
    r.view.n_dims = static_cast<int>(n_dims);
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("dimension");
      if (ne == 0) c.fail(where + ": dimension " + std::to_string(d) + " is 0");
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        c.fail(where + ": dimension " + std::to_string(d) + " = " + std::to_string(ne) + " is too large");
      }
      if (mul_overflows(n_el, ne, &n_el) || n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        c.fail(where + ": element count overflows (dimension " + std::to_string(d) + " = " + std::to_string(ne) + ")");
      }
      r.view.ne[d] = static_cast<int64_t>(ne);
    }
    const uint32_t type = c.read<uint32_t>("type");
    const DTypeInfo* info = dtype_info(type);
    if (!info) c.fail(where + ": unsupported tensor type " + ggml_type_text(type));
    r.view.type = static_cast<DType>(type);
    if (r.view.ne[0] % info->block != 0) {
      c.fail(where + ": first dimension " + std::to_string(r.view.ne[0]) + " is not a multiple of the " + info->name +
             " block size " + std::to_string(info->block));
    }
    r.offset = c.read<uint64_t>("offset");
    raw.push_back(std::move(r));
  }

  // ---- data section ----
  const uint64_t end_infos = c.pos();
  data_offset_ = static_cast<size_t>((end_infos + alignment_ - 1) / alignment_ * alignment_);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) absolute, per tensor
  ranges.reserve(raw.size());
  for (RawTensor& r : raw) {
    TensorView& v = r.view;
    const std::string where = "tensor '" + v.name + "'";
    if (r.offset % alignment_ != 0) {
      c.fail(where + ": offset " + std::to_string(r.offset) + " is not a multiple of the alignment " +
             std::to_string(alignment_));
    }
    const uint64_t rows =
        static_cast<uint64_t>(v.ne[1]) * static_cast<uint64_t>(v.ne[2]) * static_cast<uint64_t>(v.ne[3]);
    uint64_t nbytes = 0, begin = 0, end = 0;
    if (mul_overflows(rows, v.row_bytes(), &nbytes) || add_overflows(data_offset_, r.offset, &begin) ||
        add_overflows(begin, nbytes, &end)) {
      c.fail(where + ": data offset " + std::to_string(r.offset) + " + size overflows");
    }
    if (end > size_) {
      c.fail(where + ": data range [" + std::to_string(begin) + ", " + std::to_string(end) + ") exceeds file size " +
             std::to_string(size_));
    }
    v.nbytes = static_cast<size_t>(nbytes);
    v.data = base_ + begin;
    ranges.emplace_back(begin, end);
  }
  std::vector<size_t> order(raw.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  for (size_t k = 1; k < order.size(); ++k) {
    const size_t a = order[k - 1], b = order[k];
    if (ranges[b].first < ranges[a].second) {
      c.fail("tensors '" + raw[a].view.name + "' [" + std::to_string(ranges[a].first) + ", " +
             std::to_string(ranges[a].second) + ") and '" + raw[b].view.name + "' [" + std::to_string(ranges[b].first) +
             ", " + std::to_string(ranges[b].second) + ") overlap");
    }
  }
  tensors_.reserve(raw.size());
  for (RawTensor& r : raw) tensors_.push_back(std::move(r.view));
}

}  // namespace akvq::gguf
