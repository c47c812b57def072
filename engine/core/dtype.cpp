#include "core/dtype.h"

#include <string>

namespace akvq {

namespace {
constexpr DTypeInfo kF32{"F32", 1, 4};
constexpr DTypeInfo kF16{"F16", 1, 2};
constexpr DTypeInfo kQ4_0{"Q4_0", 32, 18};
constexpr DTypeInfo kQ4_1{"Q4_1", 32, 20};
constexpr DTypeInfo kQ8_0{"Q8_0", 32, 34};
constexpr DTypeInfo kQ4_K{"Q4_K", 256, 144};
constexpr DTypeInfo kQ6_K{"Q6_K", 256, 210};
constexpr DTypeInfo kBF16{"BF16", 1, 2};
constexpr DTypeInfo kQ5_0{"Q5_0", 32, 22, true};
constexpr DTypeInfo kQ5_1{"Q5_1", 32, 24, true};
constexpr DTypeInfo kQ5_K{"Q5_K", 256, 176, true};
constexpr DTypeInfo kIQ4_NL{"IQ4_NL", 32, 18, true};
}  // namespace

const DTypeInfo* dtype_info(uint32_t raw) {
  switch (raw) {
    case 0: return &kF32;
    case 1: return &kF16;
    case 2: return &kQ4_0;
    case 3: return &kQ4_1;
    case 8: return &kQ8_0;
    case 12: return &kQ4_K;
    case 14: return &kQ6_K;
    case 30: return &kBF16;
    case 6: return &kQ5_0;
    case 7: return &kQ5_1;
    case 13: return &kQ5_K;
    case 20: return &kIQ4_NL;
    default: return nullptr;
  }
}

const DTypeInfo& dtype_info(DType t) { return *dtype_info(static_cast<uint32_t>(t)); }

const char* dtype_name(uint32_t raw) {
  const DTypeInfo* i = dtype_info(raw);
  if (i) return i->name;
  thread_local std::string s;
  s = "type " + std::to_string(raw);
  return s.c_str();
}

}  // namespace akvq
