// Unicode helpers for the tokenizers: UTF-8 decoding that never fails (invalid bytes become
// single-byte "other" code points), code point classes for the pre-tokenizer regexes
// (\p{L}, \p{N}, \p{P}, \s) and GPT-2's byte <-> printable-unicode mapping.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace akvq::unicode {

struct CpRange {
  uint32_t first, last;
  uint8_t cls;  // CpClass
};
// Generated tables (unicode_tables.cpp).
extern const CpRange kCpRanges[];
extern const size_t kCpRangesCount;
extern const CpRange kWhiteSpace[];
extern const size_t kWhiteSpaceCount;

enum CpClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kPunct = 3 };

// A code point decoded from UTF-8 with its byte span in the source string.
struct Cp {
  uint32_t cp;   // code point, or 0xFFFD for an invalid byte
  uint32_t off;  // byte offset in the source
  uint8_t len;   // bytes (1..4)
  uint8_t cls;   // CpClass
  bool space;    // White_Space property
  bool invalid;  // an undecodable byte (treated as class other, not space)
};

CpClass classify(uint32_t cp);
bool is_space(uint32_t cp);
// Decodes `s` (any bytes). Invalid or truncated sequences, overlongs and surrogates give one
// `invalid` entry per offending byte.
std::vector<Cp> decode_utf8(const std::string& s);
// Length of the valid UTF-8 sequence starting at s[i] (1 for an invalid byte).
size_t utf8_len_at(const std::string& s, size_t i);
void append_utf8(std::string& out, uint32_t cp);
// True when `s` is valid UTF-8.
bool valid_utf8(const std::string& s);

// GPT-2 byte-level mapping: every byte to a printable code point and back.
uint32_t byte_to_cp(uint8_t b);
int byte_from_cp(uint32_t cp);  // -1 when cp is not the image of a byte
// Maps every byte of `bytes` to its code point, UTF-8 encoded.
std::string bytes_to_bytelevel(const std::string& bytes);

}  // namespace akvq::unicode
