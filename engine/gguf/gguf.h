// GGUF reader: memory-mapped, versions 2 and 3, every metadata type, validated before use.
// Every malformed input throws akvq::FormatError naming the problem ("[gguf] ..."); a missing or
// unreadable file throws akvq::IoError. Nothing is trusted: counts, lengths, dims, products,
// types, offsets and sizes are checked against the file length before any allocation or read.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace akvq::gguf {

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

// A metadata value. Scalars are kept widened; arrays keep their element type.
struct Value {
  ValueType type = ValueType::U8;
  // scalar payloads (the one matching `type` is set; integers also mirrored into i/u)
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  bool b = false;
  std::string str;
  // arrays
  ValueType elem_type = ValueType::U8;
  std::vector<Value> arr;  // elements (nested arrays allowed)

  bool is_int() const;     // any integer type
  bool is_number() const;  // integer or float
};

class File {
 public:
  // Maps and parses the file. Throws IoError / FormatError.
  static std::unique_ptr<File> open(const std::string& path);
  // Parses an in-memory image (copied). Used by tests and fuzzing.
  static std::unique_ptr<File> from_bytes(const void* data, size_t size, const std::string& name = "<memory>");
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  size_t data_offset() const { return data_offset_; }
  // Drops the whole pages of [p, p + n) from this process's memory when the file is memory-mapped
  // (they are read back from the file if touched again; a hint, nothing changes for readers).
  // For weights whose packed copy replaces them (ops/pack.h). No-op for in-memory images.
  void release_pages(const void* p, size_t n) const;

  // --- metadata ---
  const std::vector<std::string>& keys() const { return key_order_; }  // in file order
  const Value* find(const std::string& key) const;                     // nullptr when absent
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters. Without a default they throw FormatError when the key is absent; they
  // throw FormatError when the stored type cannot represent the request (e.g. negative -> u32).
  uint32_t get_u32(const std::string& key) const;
  uint32_t get_u32(const std::string& key, uint32_t def) const;
  int64_t get_i64(const std::string& key, int64_t def) const;
  float get_f32(const std::string& key) const;
  float get_f32(const std::string& key, float def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_str(const std::string& key) const;
  std::string get_str(const std::string& key, const std::string& def) const;
  std::vector<std::string> get_str_array(const std::string& key) const;  // throws if absent
  std::vector<float> get_f32_array(const std::string& key) const;        // numbers widened
  std::vector<int32_t> get_i32_array(const std::string& key) const;      // integers narrowed (checked)

  // --- tensors ---
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;  // nullptr when absent
  const TensorView& tensor(const std::string& name) const;       // throws FormatError when absent
  // Offset of a tensor of this file relative to the data section (as stored in the file).
  uint64_t tensor_offset(const TensorView& t) const {
    return static_cast<uint64_t>(static_cast<const uint8_t*>(t.data) - base_) - data_offset_;
  }

 private:
  File() = default;
  void parse();

  std::string path_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t data_offset_ = 0;
  void* map_ = nullptr;         // mmap'ed region (nullptr for from_bytes)
  std::vector<uint8_t> owned_;  // from_bytes copy
  std::vector<std::string> key_order_;
  std::unordered_map<std::string, Value> kv_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace akvq::gguf
