// UTF-8 decoding, code point classes and the GPT-2 byte mapping (see unicode.h).
#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace akvq::unicode {

namespace {

bool in_ranges(const CpRange* r, size_t n, uint32_t cp, uint8_t* cls) {
  const CpRange* end = r + n;
  // first range whose last >= cp
  const CpRange* it = std::lower_bound(r, end, cp, [](const CpRange& a, uint32_t v) { return a.last < v; });
  if (it == end || it->first > cp) return false;
  if (cls) *cls = it->cls;
  return true;
}

// GPT-2's table: printable Latin-1 bytes map to themselves, the other 68 bytes to 256, 257, ...
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 512> from_cp{};  // every image is < 512
  ByteMap() {
    from_cp.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

CpClass classify(uint32_t cp) {
  uint8_t c = kOther;
  if (in_ranges(kCpRanges, kCpRangesCount, cp, &c)) return static_cast<CpClass>(c);
  return kOther;
}

bool is_space(uint32_t cp) {
  return in_ranges(kWhiteSpace, kWhiteSpaceCount, cp, nullptr);
}

size_t utf8_len_at(const std::string& s, size_t i) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  const uint8_t c = p[i];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
    min = 0x10000;
  } else
    return 0;
  if (i + len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i + k] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

std::vector<Cp> decode_utf8(const std::string& s) {
  std::vector<Cp> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_len_at(s, i);
    Cp c{};
    c.off = static_cast<uint32_t>(i);
    if (len == 0) {  // invalid byte: its own code point of class "other"
      c.cp = 0xFFFD;
      c.len = 1;
      c.cls = kOther;
      c.space = false;
      c.invalid = true;
      out.push_back(c);
      ++i;
      continue;
    }
    uint32_t cp = len == 1 ? p[i] : (p[i] & (0x7F >> len));
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
    c.cp = cp;
    c.len = static_cast<uint8_t>(len);
    c.cls = classify(cp);
    c.space = is_space(cp);
    c.invalid = false;
    out.push_back(c);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_len_at(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

uint32_t byte_to_cp(uint8_t b) {
  return byte_map().to_cp[b];
}

int byte_from_cp(uint32_t cp) {
  return cp < 512 ? byte_map().from_cp[cp] : -1;
}

std::string bytes_to_bytelevel(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(out, byte_to_cp(b));
  return out;
}

}  // namespace akvq::unicode
