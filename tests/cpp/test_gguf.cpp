// GGUF reader: small images built in memory (every value type, nested arrays, v2/v3, custom
// alignment) parse to the expected values; every kind of corruption throws FormatError with a
// message that names the problem; a missing file throws IoError.
#include <akvq/error.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gguf/gguf.h"

using namespace akvq;
using akvq::gguf::File;
using akvq::gguf::Value;
using akvq::gguf::ValueType;

namespace {

// Little-endian byte writer.
struct Bytes {
  std::vector<uint8_t> b;
  template <class T>
  Bytes& put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& append(const std::vector<uint8_t>& o) {
    b.insert(b.end(), o.begin(), o.end());
    return *this;
  }
};

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ne;  // innermost first
  uint32_t type = 0;
  uint64_t offset = 0;  // relative to the data section
};

// Builds a GGUF image from parts; tests corrupt the parts (or the bytes) to make bad files.
struct Builder {
  uint32_t version = 3;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> kvs;  // key, (u32 type + value) bytes
  std::vector<TensorSpec> tensors;
  std::vector<uint8_t> data;  // the data section
  size_t alignment = 32;      // used for padding only; add a general.alignment kv to declare it
  int64_t n_tensors_override = -1, n_kv_override = -1;

  Builder& kv(const std::string& key, uint32_t type, const std::function<void(Bytes&)>& val) {
    Bytes v;
    v.put<uint32_t>(type);
    val(v);
    kvs.emplace_back(key, v.b);
    return *this;
  }
  Builder& kv_u32(const std::string& key, uint32_t x) {
    return kv(key, 4, [&](Bytes& o) { o.put(x); });
  }
  Builder& kv_str(const std::string& key, const std::string& s) {
    return kv(key, 8, [&](Bytes& o) { o.str(s); });
  }
  // Appends a tensor whose data (bytes) is placed at the next aligned offset of the data section.
  Builder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, const std::vector<uint8_t>& bytes) {
    while (data.size() % alignment) data.push_back(0);
    tensors.push_back({name, std::move(ne), type, data.size()});
    data.insert(data.end(), bytes.begin(), bytes.end());
    return *this;
  }

  std::vector<uint8_t> bytes() const {
    Bytes o;
    o.put<uint32_t>(0x46554747u);  // "GGUF"
    o.put<uint32_t>(version);
    o.put<uint64_t>(n_tensors_override >= 0 ? uint64_t(n_tensors_override) : tensors.size());
    o.put<uint64_t>(n_kv_override >= 0 ? uint64_t(n_kv_override) : kvs.size());
    for (const auto& [k, v] : kvs) o.str(k).append(v);
    for (const TensorSpec& t : tensors) {
      o.str(t.name).put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) o.put(d);
      o.put(t.type).put(t.offset);
    }
    while (o.b.size() % alignment) o.b.push_back(0);
    return o.append(data).b;
  }
};

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::unique_ptr<File> parse(const std::vector<uint8_t>& b) {
  return File::from_bytes(b.data(), b.size(), "test.gguf");
}

// Expects FormatError whose message contains every fragment.
void expect_format_error(const std::vector<uint8_t>& b, const std::vector<std::string>& fragments) {
  try {
    parse(b);
    ADD_FAILURE() << "no error; expected: " << fragments[0];
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("[gguf] test.gguf: ", 0), 0u) << msg;
    for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

// A valid small file: metadata + an F32 [2, 8] and a Q8_0 [3, 32] tensor.
Builder valid_file() {
  Builder b;
  b.kv_str("general.architecture", "llama").kv_u32("llama.block_count", 2);
  std::vector<float> w(16);
  for (int k = 0; k < 16; ++k) w[k] = 0.5f * k - 3;
  b.tensor("blk.0.attn_norm.weight", {8, 2}, 0, f32_bytes(w));
  b.tensor("blk.3.attn_q.weight", {32, 3}, 8, std::vector<uint8_t>(3 * 34, 1));
  return b;
}

}  // namespace

TEST(Gguf, EveryValueTypeAndNestedArrays) {
  for (uint32_t version : {2u, 3u}) {
    Builder b;
    b.version = version;
    b.kv("u8", 0, [](Bytes& o) { o.put<uint8_t>(250); });
    b.kv("i8", 1, [](Bytes& o) { o.put<int8_t>(-7); });
    b.kv("u16", 2, [](Bytes& o) { o.put<uint16_t>(65000); });
    b.kv("i16", 3, [](Bytes& o) { o.put<int16_t>(-30000); });
    b.kv("u32", 4, [](Bytes& o) { o.put<uint32_t>(4000000000u); });
    b.kv("i32", 5, [](Bytes& o) { o.put<int32_t>(-2000000000); });
    b.kv("f32", 6, [](Bytes& o) { o.put<float>(1.25e-5f); });
    b.kv("bool_t", 7, [](Bytes& o) { o.put<uint8_t>(1); });
    b.kv("bool_f", 7, [](Bytes& o) { o.put<uint8_t>(0); });
    b.kv("str", 8, [](Bytes& o) { o.str("héllo\n"); });
    b.kv("empty_str", 8, [](Bytes& o) { o.str(""); });
    b.kv("u64", 10, [](Bytes& o) { o.put<uint64_t>(18446744073709551615ull); });
    b.kv("i64", 11, [](Bytes& o) { o.put<int64_t>(std::numeric_limits<int64_t>::min()); });
    b.kv("f64", 12, [](Bytes& o) { o.put<double>(-3.141592653589793); });
    b.kv("arr_str", 9, [](Bytes& o) { o.put<uint32_t>(8).put<uint64_t>(3).str("a").str("").str("ccc"); });
    b.kv("arr_f32", 9, [](Bytes& o) { o.put<uint32_t>(6).put<uint64_t>(2).put(0.5f).put(-2.0f); });
    b.kv("arr_i32", 9, [](Bytes& o) { o.put<uint32_t>(5).put<uint64_t>(3).put(1).put(-2).put(3); });
    b.kv("arr_empty", 9, [](Bytes& o) { o.put<uint32_t>(4).put<uint64_t>(0); });
    b.kv("arr_bool", 9, [](Bytes& o) { o.put<uint32_t>(7).put<uint64_t>(2).put<uint8_t>(1).put<uint8_t>(0); });
    // [[1, 2], [], [3]] as arrays of u16, then [["x"], [[7]]]-style deeper nesting
    b.kv("nested", 9, [](Bytes& o) {
      o.put<uint32_t>(9).put<uint64_t>(3);
      o.put<uint32_t>(2).put<uint64_t>(2).put<uint16_t>(1).put<uint16_t>(2);
      o.put<uint32_t>(2).put<uint64_t>(0);
      o.put<uint32_t>(2).put<uint64_t>(1).put<uint16_t>(3);
    });
    b.kv("nested3", 9, [](Bytes& o) {
      o.put<uint32_t>(9).put<uint64_t>(1);                     // one element: an array
      o.put<uint32_t>(9).put<uint64_t>(1);                     //   of one array
      o.put<uint32_t>(8).put<uint64_t>(2).str("x").str("yz");  //     of two strings
    });
    const auto f = parse(b.bytes());
    EXPECT_EQ(f->version(), version);
    EXPECT_EQ(f->alignment(), 32u);
    ASSERT_EQ(f->keys().size(), 21u);
    EXPECT_EQ(f->keys()[0], "u8");
    EXPECT_EQ(f->keys()[20], "nested3");
    EXPECT_EQ(f->find("u8")->u, 250u);
    EXPECT_EQ(f->find("i8")->i, -7);
    EXPECT_EQ(f->find("u16")->u, 65000u);
    EXPECT_EQ(f->find("i16")->i, -30000);
    EXPECT_EQ(f->find("u32")->u, 4000000000u);
    EXPECT_EQ(f->find("i32")->i, -2000000000);
    EXPECT_EQ(f->find("f32")->type, ValueType::F32);
    EXPECT_EQ(static_cast<float>(f->find("f32")->f), 1.25e-5f);
    EXPECT_TRUE(f->find("bool_t")->b);
    EXPECT_FALSE(f->find("bool_f")->b);
    EXPECT_EQ(f->find("str")->str, "héllo\n");
    EXPECT_EQ(f->find("empty_str")->str, "");
    EXPECT_EQ(f->find("u64")->u, 18446744073709551615ull);
    EXPECT_EQ(f->find("i64")->i, std::numeric_limits<int64_t>::min());
    EXPECT_EQ(f->find("f64")->f, -3.141592653589793);
    EXPECT_EQ(f->get_str_array("arr_str"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(f->get_f32_array("arr_f32"), (std::vector<float>{0.5f, -2.0f}));
    EXPECT_EQ(f->get_i32_array("arr_i32"), (std::vector<int32_t>{1, -2, 3}));
    EXPECT_EQ(f->find("arr_empty")->elem_type, ValueType::U32);
    EXPECT_TRUE(f->find("arr_empty")->arr.empty());
    EXPECT_TRUE(f->find("arr_bool")->arr[0].b);
    const Value* n = f->find("nested");
    ASSERT_EQ(n->type, ValueType::ARRAY);
    ASSERT_EQ(n->elem_type, ValueType::ARRAY);
    ASSERT_EQ(n->arr.size(), 3u);
    EXPECT_EQ(n->arr[0].elem_type, ValueType::U16);
    EXPECT_EQ(n->arr[0].arr[1].u, 2u);
    EXPECT_TRUE(n->arr[1].arr.empty());
    EXPECT_EQ(n->arr[2].arr[0].u, 3u);
    EXPECT_EQ(f->find("nested3")->arr[0].arr[0].arr[1].str, "yz");
    EXPECT_EQ(f->find("missing"), nullptr);
    EXPECT_TRUE(f->tensors().empty());
  }
}

TEST(Gguf, TypedGetters) {
  Builder b;
  b.kv("neg", 5, [](Bytes& o) { o.put<int32_t>(-1); });
  b.kv("big", 10, [](Bytes& o) { o.put<uint64_t>(1ull << 40); });
  b.kv("small", 0, [](Bytes& o) { o.put<uint8_t>(9); });
  b.kv("eps", 6, [](Bytes& o) { o.put<float>(1e-5f); });
  b.kv("flag", 7, [](Bytes& o) { o.put<uint8_t>(1); });
  b.kv_str("name", "x");
  b.kv("ids", 9, [](Bytes& o) { o.put<uint32_t>(10).put<uint64_t>(1).put<uint64_t>(1ull << 33); });
  const auto f = parse(b.bytes());
  EXPECT_EQ(f->get_u32("small"), 9u);
  EXPECT_EQ(f->get_u32("absent", 7u), 7u);
  EXPECT_EQ(f->get_i64("neg", 0), -1);
  EXPECT_EQ(f->get_i64("big", 0), int64_t(1) << 40);
  EXPECT_EQ(f->get_f32("eps"), 1e-5f);
  EXPECT_EQ(f->get_f32("small"), 9.0f);  // integers widen to float
  EXPECT_EQ(f->get_f32("absent", 2.5f), 2.5f);
  EXPECT_TRUE(f->get_bool("flag", false));
  EXPECT_EQ(f->get_str("name"), "x");
  EXPECT_EQ(f->get_str("absent", "d"), "d");
  EXPECT_THROW(f->get_u32("neg"), FormatError);  // negative -> u32
  EXPECT_THROW(f->get_u32("big"), FormatError);  // too large for u32
  EXPECT_THROW(f->get_u32("name"), FormatError);
  EXPECT_THROW(f->get_u32("absent"), FormatError);
  EXPECT_THROW(f->get_str("eps"), FormatError);
  EXPECT_THROW(f->get_bool("small", false), FormatError);
  EXPECT_THROW(f->get_i32_array("ids"), FormatError);  // 2^33 does not fit i32
  EXPECT_THROW(f->get_str_array("ids"), FormatError);
  try {
    f->get_u32("neg");
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'neg'"), std::string::npos) << e.what();
  }
}

TEST(Gguf, TensorsWithCustomAlignment) {
  for (size_t align : {1u, 8u, 32u, 64u, 256u}) {
    Builder b;
    b.alignment = align;
    b.kv_u32("general.alignment", static_cast<uint32_t>(align));
    std::vector<float> w(16);
    for (int k = 0; k < 16; ++k) w[k] = 0.25f * k;
    b.tensor("a", {8, 2}, 0, f32_bytes(w));
    std::vector<uint8_t> q(2 * 3 * 20);
    for (size_t k = 0; k < q.size(); ++k) q[k] = static_cast<uint8_t>(k * 7);
    b.tensor("b", {64, 3}, 3, q);                                          // Q4_1 [3, 64]
    b.tensor("c", {256, 1, 1, 1}, 14, std::vector<uint8_t>(210, 5));       // Q6_K, 4-D
    b.tensor("d", {4, 3, 2}, 30, std::vector<uint8_t>(4 * 3 * 2 * 2, 0));  // BF16
    const auto f = parse(b.bytes());
    EXPECT_EQ(f->alignment(), align);
    EXPECT_EQ(f->data_offset() % align, 0u);
    ASSERT_EQ(f->tensors().size(), 4u);
    const TensorView& a = f->tensor("a");
    EXPECT_EQ(a.type, DType::F32);
    EXPECT_EQ(a.n_dims, 2);
    EXPECT_EQ(a.ne[0], 8);
    EXPECT_EQ(a.ne[1], 2);
    EXPECT_EQ(a.nbytes, 64u);
    EXPECT_EQ(std::memcmp(a.data, w.data(), 64), 0);
    const TensorView& tb = f->tensor("b");
    EXPECT_EQ(tb.type, DType::Q4_1);
    EXPECT_EQ(tb.nbytes, q.size());
    EXPECT_EQ(tb.row_bytes(), 40u);
    EXPECT_EQ(std::memcmp(tb.data, q.data(), q.size()), 0);
    EXPECT_EQ((static_cast<const uint8_t*>(tb.data) - static_cast<const uint8_t*>(a.data)) % align, 0);
    EXPECT_EQ(f->tensor("c").n_dims, 4);
    EXPECT_EQ(f->tensor("c").nbytes, 210u);
    EXPECT_EQ(f->tensor("d").nelements(), 24);
    EXPECT_EQ(f->tensor("d").rows(), 6);
    EXPECT_EQ(f->find_tensor("zzz"), nullptr);
    EXPECT_THROW(f->tensor("zzz"), FormatError);
  }
}

TEST(Gguf, OpenFromDiskAndMissingFile) {
  const std::vector<uint8_t> img = valid_file().bytes();
  const std::string path = ::testing::TempDir() + "akvq_gguf_test.gguf";
  FILE* fp = std::fopen(path.c_str(), "wb");
  ASSERT_NE(fp, nullptr);
  ASSERT_EQ(std::fwrite(img.data(), 1, img.size(), fp), img.size());
  std::fclose(fp);
  {
    const auto f = File::open(path);
    EXPECT_EQ(f->path(), path);
    EXPECT_EQ(f->file_size(), img.size());
    EXPECT_EQ(f->get_str("general.architecture"), "llama");
    EXPECT_EQ(f->tensor("blk.0.attn_norm.weight").nbytes, 64u);
    EXPECT_EQ(static_cast<const float*>(f->tensor("blk.0.attn_norm.weight").data)[3], -1.5f);
  }
  std::remove(path.c_str());
  try {
    File::open(path);
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(File::open(::testing::TempDir()), IoError);  // a directory
  EXPECT_THROW(File::open("/dev/null"), IoError);           // not a regular file
}

// ---------------------------------------------------------------------------------------------
// Malformed inputs

TEST(GgufMalformed, TruncatedAtEveryOffset) {
  const std::vector<uint8_t> img = valid_file().bytes();
  ASSERT_NO_THROW(parse(img));
  for (size_t n = 0; n < img.size(); ++n) {
    const std::vector<uint8_t> cut(img.begin(), img.begin() + n);
    try {
      parse(cut);
      ADD_FAILURE() << "truncated to " << n << " bytes parsed";
    } catch (const FormatError& e) {
      const std::string msg = e.what();
      const bool ok = msg.find("truncated at offset") != std::string::npos ||
                      msg.find("exceeds file size") != std::string::npos ||
                      msg.find("is impossible") != std::string::npos || msg.find("cannot fit") != std::string::npos ||
                      msg.find("exceeds the") != std::string::npos;
      EXPECT_TRUE(ok) << n << ": " << msg;
    }
  }
  expect_format_error({}, {"truncated at offset 0 while reading magic"});
  expect_format_error({'G', 'G', 'U', 'F', 3, 0}, {"truncated at offset 4 while reading version"});
}

TEST(GgufMalformed, HeaderErrors) {
  std::vector<uint8_t> img = valid_file().bytes();
  img[0] = 'X';
  expect_format_error(img, {"bad magic", "not a GGUF file"});
  Builder b = valid_file();
  b.version = 1;
  expect_format_error(b.bytes(), {"unsupported version 1"});
  b.version = 4;
  expect_format_error(b.bytes(), {"unsupported version 4"});
  b.version = 0x03000000u;
  expect_format_error(b.bytes(), {"big-endian"});
  b = valid_file();
  b.n_tensors_override = int64_t(1) << 62;
  expect_format_error(b.bytes(), {"tensor count 4611686018427387904 is impossible"});
  b = valid_file();
  b.n_kv_override = std::numeric_limits<int64_t>::max();
  expect_format_error(b.bytes(), {"metadata count", "is impossible"});
  b = valid_file();
  b.n_kv_override = 5;  // more entries than written: the tensor infos are misread as metadata
  EXPECT_THROW(parse(b.bytes()), FormatError);
}

TEST(GgufMalformed, MetadataErrors) {
  auto with_kv = [](const std::function<void(Builder&)>& add) {
    Builder b = valid_file();
    add(b);
    return b.bytes();
  };
  expect_format_error(with_kv([](Builder& b) { b.kv("x", 13, [](Bytes&) {}); }), {"key 'x'", "unknown value type 13"});
  expect_format_error(with_kv([](Builder& b) { b.kv("x", 0xffffffffu, [](Bytes&) {}); }), {"unknown value type"});
  expect_format_error(with_kv([](Builder& b) { b.kv("x", 7, [](Bytes& o) { o.put<uint8_t>(2); }); }),
                      {"key 'x'", "bool value 2"});
  expect_format_error(with_kv([](Builder& b) { b.kv("x", 8, [](Bytes& o) { o.put<uint64_t>(1ull << 63); }); }),
                      {"key 'x'", "string length 9223372036854775808"});
  expect_format_error(
      with_kv([](Builder& b) { b.kv("x", 9, [](Bytes& o) { o.put<uint32_t>(0).put<uint64_t>(1ull << 63); }); }),
      {"key 'x'", "array length 9223372036854775808 is impossible"});
  expect_format_error(
      with_kv([](Builder& b) { b.kv("x", 9, [](Bytes& o) { o.put<uint32_t>(8).put<uint64_t>(1ull << 40); }); }),
      {"array length", "is impossible"});
  expect_format_error(with_kv([](Builder& b) { b.kv("x", 9, [](Bytes& o) { o.put<uint32_t>(77).put<uint64_t>(1); }); }),
                      {"key 'x'", "unknown array element type 77"});
  // 9 levels of nesting
  expect_format_error(with_kv([](Builder& b) {
                        b.kv("deep", 9, [](Bytes& o) {
                          for (int d = 0; d < 9; ++d) o.put<uint32_t>(9).put<uint64_t>(1);
                          o.put<uint32_t>(0).put<uint64_t>(0);
                        });
                      }),
                      {"key 'deep'", "nested deeper than 8"});
  expect_format_error(with_kv([](Builder& b) { b.kv_u32("llama.block_count", 3); }),
                      {"duplicate key 'llama.block_count'"});
  expect_format_error(with_kv([](Builder& b) { b.kv_u32("", 3); }), {"empty key"});
  expect_format_error(with_kv([](Builder& b) { b.kv_u32("bad\xff", 3); }), {"key is not valid UTF-8"});
  expect_format_error(with_kv([](Builder& b) { b.kv_u32("bad\xc0\xafkey", 3); }), {"not valid UTF-8"});  // overlong
  expect_format_error(with_kv([](Builder& b) { b.kv_u32("\xed\xa0\x80", 3); }), {"not valid UTF-8"});    // surrogate
  EXPECT_NO_THROW(parse(with_kv([](Builder& b) { b.kv_u32("caf\xc3\xa9.\xf0\x9f\x98\x80", 3); })));
  // The total number of array elements is capped (each costs ~100 bytes of memory): 9M u8 > 8M.
  {
    const uint64_t n = 9u << 20;
    expect_format_error(with_kv([&](Builder& b) {
                          b.kv("big", 9, [&](Bytes& o) {
                            o.put<uint32_t>(0).put<uint64_t>(n);
                            o.b.resize(o.b.size() + n, 0);
                          });
                        }),
                        {"key 'big'", "metadata array elements"});
  }
  // A huge key length.
  {
    Builder b = valid_file();
    std::vector<uint8_t> img = b.bytes();
    std::memset(img.data() + 24, 0xff, 8);  // the first key's length
    expect_format_error(img, {"key of metadata entry #0", "string length 18446744073709551615"});
  }
  // alignment: zero, not a power of two, wrong type
  expect_format_error(with_kv([](Builder& b) { b.kv_u32("general.alignment", 0); }),
                      {"general.alignment 0", "power of two"});
  expect_format_error(with_kv([](Builder& b) { b.kv_u32("general.alignment", 48); }), {"general.alignment 48"});
  expect_format_error(with_kv([](Builder& b) { b.kv("general.alignment", 10, [](Bytes& o) { o.put<uint64_t>(32); }); }),
                      {"general.alignment must be a u32, got u64"});
}

TEST(GgufMalformed, TensorInfoErrors) {
  auto mutate = [](const std::function<void(TensorSpec&)>& f, size_t which = 1) {
    Builder b = valid_file();
    f(b.tensors[which]);
    return b.bytes();
  };
  const std::string q = "tensor 'blk.3.attn_q.weight'";
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {}; }), {q, "n_dims 0"});
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {32, 1, 1, 1, 3}; }), {q, "n_dims 5"});
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {32, 0}; }), {q, "dimension 1 is 0"});
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {32, uint64_t(-3)}; }),
                      {q, "dimension 1 = 18446744073709551613 is too large"});
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {1ull << 32, 1ull << 32}; }), {q, "element count overflows"});
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {32, 1ull << 58}; }), {q, "overflows"});
  expect_format_error(mutate([](TensorSpec& t) { t.type = 11; }), {q, "unsupported tensor type Q3_K (11)"});
  expect_format_error(mutate([](TensorSpec& t) { t.type = 1000; }), {q, "unsupported tensor type type 1000"});
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {16, 3}; }), {q, "first dimension 16", "Q8_0 block size 32"});
  expect_format_error(mutate([](TensorSpec& t) { t.offset += 4; }), {q, "offset 68", "alignment 32"});
  expect_format_error(mutate([](TensorSpec& t) { t.offset = 1ull << 62; }), {q, "exceeds file size"});
  expect_format_error(mutate([](TensorSpec& t) { t.offset = uint64_t(-32); }), {q, "overflows"});
  expect_format_error(mutate([](TensorSpec& t) { t.ne = {32, 4}; }), {q, "data range [", "exceeds file size"});
  expect_format_error(mutate([](TensorSpec& t) { t.offset = 32; }),
                      {"tensors 'blk.0.attn_norm.weight' [", "and 'blk.3.attn_q.weight' [", "overlap"});
  expect_format_error(mutate([](TensorSpec& t) { t.offset = 0; }), {"overlap"});
  expect_format_error(mutate([](TensorSpec& t) { t.name = "blk.\x80"; }),
                      {"tensor info #1", "name is not valid UTF-8"});
  expect_format_error(mutate([](TensorSpec& t) { t.name = "blk.0.attn_norm.weight"; }),
                      {"duplicate tensor 'blk.0.attn_norm.weight'"});
  // Exact message format for a range error.
  {
    Builder b = valid_file();
    b.tensors[1].ne = {32, 4};
    const std::vector<uint8_t> img = b.bytes();
    const auto good = parse(valid_file().bytes());
    const size_t begin = good->data_offset() + 64;
    expect_format_error(img,
                        {"[gguf] test.gguf: tensor 'blk.3.attn_q.weight': data range [" + std::to_string(begin) + ", " +
                         std::to_string(begin + 4 * 34) + ") exceeds file size " + std::to_string(img.size())});
  }
}
