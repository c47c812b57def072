// A tiny in-memory GGUF v3 writer for tests: metadata (u32, i32, f32, bool, string, string/f32/i32
// arrays) and tensors (F32, F16 or Q8_0 quantized here), aligned to 32 bytes.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/fp16.h"

namespace akvq::testing {

class GgufWriter {
 public:
  void u32(const std::string& key, uint32_t v) { kv_header(key, 4), put(v); }
  void i32(const std::string& key, int32_t v) { kv_header(key, 5), put(v); }
  void f32(const std::string& key, float v) { kv_header(key, 6), put(v); }
  void boolean(const std::string& key, bool v) { kv_header(key, 7), put<uint8_t>(v ? 1 : 0); }
  void str(const std::string& key, const std::string& v) { kv_header(key, 8), put_str(meta_, v); }
  void str_array(const std::string& key, const std::vector<std::string>& v) {
    kv_header(key, 9), put<uint32_t>(8), put<uint64_t>(v.size());
    for (const auto& s : v) put_str(meta_, s);
  }
  void f32_array(const std::string& key, const std::vector<float>& v) {
    kv_header(key, 9), put<uint32_t>(6), put<uint64_t>(v.size());
    for (float x : v) put(x);
  }
  void i32_array(const std::string& key, const std::vector<int32_t>& v) {
    kv_header(key, 9), put<uint32_t>(5), put<uint64_t>(v.size());
    for (int32_t x : v) put(x);
  }

  // type: 0 F32, 1 F16, 8 Q8_0 (values quantized here). ne innermost first.
  void tensor(const std::string& name, std::vector<int64_t> ne, const std::vector<float>& x, uint32_t type = 0) {
    std::vector<uint8_t> bytes;
    if (type == 0) {
      bytes.resize(x.size() * 4);
      std::memcpy(bytes.data(), x.data(), bytes.size());
    } else if (type == 1) {
      for (float f : x) append_raw(bytes, f32_to_fp16(f));
    } else {  // Q8_0: blocks of 32 values, fp16 scale + 32 int8
      for (size_t b = 0; b < x.size(); b += 32) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b + j]));
        const float d = amax / 127.0f;
        append_raw(bytes, f32_to_fp16(d));
        for (int j = 0; j < 32; ++j) {
          const float q = d > 0 ? std::round(x[b + j] / d) : 0.0f;
          bytes.push_back(static_cast<uint8_t>(static_cast<int8_t>(q)));
        }
      }
    }
    put_str(tinfo_, name);
    append_raw(tinfo_, static_cast<uint32_t>(ne.size()));
    for (int64_t d : ne) append_raw(tinfo_, static_cast<uint64_t>(d));
    append_raw(tinfo_, type);
    while (data_.size() % 32) data_.push_back(0);
    append_raw(tinfo_, static_cast<uint64_t>(data_.size()));
    data_.insert(data_.end(), bytes.begin(), bytes.end());
    ++n_tensors_;
  }

  // Streaming large files: declares a tensor of nbytes raw bytes of GGUF type `type` (not stored
  // here). Write header(), then each declared tensor's bytes in order, each padded to 32 bytes.
  void tensor_decl(const std::string& name, std::vector<int64_t> ne, uint32_t type, uint64_t nbytes) {
    put_str(tinfo_, name);
    append_raw(tinfo_, static_cast<uint32_t>(ne.size()));
    for (int64_t d : ne) append_raw(tinfo_, static_cast<uint64_t>(d));
    append_raw(tinfo_, type);
    append_raw(tinfo_, declared_);
    declared_ += (nbytes + 31) / 32 * 32;
    ++n_tensors_;
  }
  std::vector<uint8_t> header() const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
    append_raw(out, uint32_t{3});
    append_raw(out, static_cast<uint64_t>(n_tensors_));
    append_raw(out, static_cast<uint64_t>(n_kv_));
    out.insert(out.end(), meta_.begin(), meta_.end());
    out.insert(out.end(), tinfo_.begin(), tinfo_.end());
    while (out.size() % 32) out.push_back(0);
    return out;
  }

  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out = header();
    out.insert(out.end(), data_.begin(), data_.end());
    while (out.size() % 32) out.push_back(0);
    return out;
  }

 private:
  template <class T>
  static void append_raw(std::vector<uint8_t>& b, T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
  }
  static void put_str(std::vector<uint8_t>& b, const std::string& s) {
    append_raw(b, static_cast<uint64_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
  template <class T>
  void put(T v) {
    append_raw(meta_, v);
  }
  void kv_header(const std::string& key, uint32_t type) {
    put_str(meta_, key);
    put(type);
    ++n_kv_;
  }

  std::vector<uint8_t> meta_, tinfo_, data_;
  size_t n_kv_ = 0, n_tensors_ = 0;
  uint64_t declared_ = 0;  // data bytes of the streamed tensors so far
};

// The llama hyperparameter keys of `arch` (head_dim = n_embd / n_head, RoPE over all of it).
inline void write_llama_hparams(GgufWriter& wr, const std::string& arch, int n_ctx, int n_embd, int n_layer, int n_ff,
                                int n_head, int n_head_kv, float theta, float eps) {
  const std::string a = arch + ".";
  wr.u32(a + "context_length", n_ctx);
  wr.u32(a + "embedding_length", n_embd);
  wr.u32(a + "block_count", n_layer);
  wr.u32(a + "feed_forward_length", n_ff);
  wr.u32(a + "rope.dimension_count", n_embd / n_head);
  wr.f32(a + "rope.freq_base", theta);
  wr.u32(a + "attention.head_count", n_head);
  wr.u32(a + "attention.head_count_kv", n_head_kv);
  wr.f32(a + "attention.layer_norm_rms_epsilon", eps);
}

}  // namespace akvq::testing
