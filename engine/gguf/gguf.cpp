// GGUF file: opening (mmap), in-memory images, metadata lookups and typed getters.
// Parsing and validation live in parse.cpp.
#include "gguf/gguf.h"

#include <akvq/error.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>

namespace akvq::gguf {
namespace {

std::string os_reason(int err) {
  return std::error_code(err, std::generic_category()).message();
}

const char* type_text(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "?";
}

bool is_signed(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}

// True when integer value v lies in [lo, hi].
bool int_in_range(const Value& v, int64_t lo, uint64_t hi) {
  if (is_signed(v.type) || v.type == ValueType::BOOL) {
    return v.i >= lo && (v.i < 0 || static_cast<uint64_t>(v.i) <= hi);
  }
  return v.u <= hi && (lo <= 0 || v.u >= static_cast<uint64_t>(lo));
}

}  // namespace

bool Value::is_int() const {
  switch (type) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::U16:
    case ValueType::I16:
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::U64:
    case ValueType::I64: return true;
    default: return false;
  }
}

bool Value::is_number() const {
  return is_int() || type == ValueType::F32 || type == ValueType::F64;
}

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw IoError("[gguf] " + path + ": cannot open: " + os_reason(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError("[gguf] " + path + ": cannot stat: " + os_reason(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError("[gguf] " + path + ": " + (S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file"));
  }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw IoError("[gguf] " + path + ": mmap of " + std::to_string(f->size_) + " bytes failed: " + os_reason(err));
    }
    f->map_ = p;
    f->base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid
  f->parse();
  return f;
}

void File::release_pages(const void* p, size_t n) const {
  if (!map_ || !p || n == 0) return;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  const uintptr_t map_lo = reinterpret_cast<uintptr_t>(map_), map_hi = map_lo + size_;
  if (lo < map_lo || hi > map_hi) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t a = (lo + page - 1) / page * page, b = hi / page * page;
  if (b > a) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

std::unique_ptr<File> File::from_bytes(const void* data, size_t size, const std::string& name) {
  std::unique_ptr<File> f(new File());
  f->path_ = name;
  // Over-allocate so the copy starts on a 64-byte boundary, like a page-aligned mapping would.
  constexpr size_t kAlign = 64;
  f->owned_.resize(size + kAlign);
  uint8_t* p = f->owned_.data();
  p += (kAlign - reinterpret_cast<uintptr_t>(p) % kAlign) % kAlign;
  if (size) std::memcpy(p, data, size);
  f->base_ = p;
  f->size_ = size;
  f->parse();
  return f;
}

File::~File() {
  if (map_) ::munmap(map_, size_);
}

const Value* File::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

namespace {
[[noreturn]] void bad_type(const std::string& path, const std::string& key, const Value& v, const char* want) {
  throw FormatError("[gguf] " + path + ": key '" + key + "' has type " + type_text(v.type) + ", expected " + want);
}
[[noreturn]] void absent(const std::string& path, const std::string& key) {
  throw FormatError("[gguf] " + path + ": required key '" + key + "' is missing");
}
[[noreturn]] void out_of_range(const std::string& path, const std::string& key, const char* want) {
  throw FormatError("[gguf] " + path + ": key '" + key + "' holds a value out of range for " + want);
}
}  // namespace

uint32_t File::get_u32(const std::string& key) const {
  const Value* v = find(key);
  if (!v) absent(path_, key);
  if (!v->is_int()) bad_type(path_, key, *v, "an integer");
  if (!int_in_range(*v, 0, std::numeric_limits<uint32_t>::max())) out_of_range(path_, key, "u32");
  return static_cast<uint32_t>(v->u);
}

uint32_t File::get_u32(const std::string& key, uint32_t def) const {
  return has(key) ? get_u32(key) : def;
}

int64_t File::get_i64(const std::string& key, int64_t def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (!v->is_int()) bad_type(path_, key, *v, "an integer");
  if (!int_in_range(*v, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    out_of_range(path_, key, "i64");
  }
  return v->i;
}

float File::get_f32(const std::string& key) const {
  const Value* v = find(key);
  if (!v) absent(path_, key);
  if (!v->is_number()) bad_type(path_, key, *v, "a number");
  return static_cast<float>(v->f);
}

float File::get_f32(const std::string& key, float def) const {
  return has(key) ? get_f32(key) : def;
}

bool File::get_bool(const std::string& key, bool def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (v->type != ValueType::BOOL) bad_type(path_, key, *v, "bool");
  return v->b;
}

std::string File::get_str(const std::string& key) const {
  const Value* v = find(key);
  if (!v) absent(path_, key);
  if (v->type != ValueType::STRING) bad_type(path_, key, *v, "string");
  return v->str;
}

std::string File::get_str(const std::string& key, const std::string& def) const {
  return has(key) ? get_str(key) : def;
}

std::vector<std::string> File::get_str_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) absent(path_, key);
  if (v->type != ValueType::ARRAY || v->elem_type != ValueType::STRING) bad_type(path_, key, *v, "array of string");
  std::vector<std::string> out;
  out.reserve(v->arr.size());
  for (const Value& e : v->arr) out.push_back(e.str);
  return out;
}

std::vector<float> File::get_f32_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) absent(path_, key);
  if (v->type != ValueType::ARRAY) bad_type(path_, key, *v, "array of numbers");
  std::vector<float> out;
  out.reserve(v->arr.size());
  for (const Value& e : v->arr) {
    if (!e.is_number()) bad_type(path_, key, *v, "array of numbers");
    out.push_back(static_cast<float>(e.f));
  }
  return out;
}

std::vector<int32_t> File::get_i32_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) absent(path_, key);
  if (v->type != ValueType::ARRAY) bad_type(path_, key, *v, "array of integers");
  std::vector<int32_t> out;
  out.reserve(v->arr.size());
  for (const Value& e : v->arr) {
    if (!e.is_int()) bad_type(path_, key, *v, "array of integers");
    if (!int_in_range(e, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max())) {
      out_of_range(path_, key, "i32 array");
    }
    out.push_back(static_cast<int32_t>(e.i));
  }
  return out;
}

const TensorView* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& File::tensor(const std::string& name) const {
  const TensorView* t = find_tensor(name);
  if (!t) throw FormatError("[gguf] " + path_ + ": tensor '" + name + "' is missing");
  return *t;
}

}  // namespace akvq::gguf
