// Hand-written pre-tokenizer matchers vs Hugging Face `tokenizers` (Split with the same regex;
// smollm = Digits(individual_digits) + the GPT-2 regex). The expected pieces below were produced
// by tokenizers 0.23 (pre_tokenize_str) for these strings with
// `python tests/fixtures/make_tokenizer_fixtures.py --cpp-cases`, which also runs the same
// pre-tokenizers over the whole mixed-text corpus for the Python parity tests.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

namespace akvq {
namespace {

struct SplitCase {
  const char* text;
  std::vector<std::string> pieces;
};

const SplitCase kGpt2Cases[] = {
    {"Hello world", {"Hello", " world"}},
    {"I'm here, they're THERE and we'VE gone; it's O'Neil's 'quote'",
     {"I",     "'m", " here", ",",  " they", "'re", " THERE", " and", " we", "'",     "VE",
      " gone", ";",  " it",   "'s", " O",    "'",   "Neil",   "'s",   " '",  "quote", "'"}},
    {"  leading\tand   trailing  ", {" ", " leading", "\t", "and", "  ", " trailing", "  "}},
    {"line1\nline2\r\n\r\n  indented\n\n\n", {"line", "1", "\n", "line", "2", "\r\n\r\n ", " indented", "\n\n\n"}},
    {"Inc.,\n 51 tokens", {"Inc", ".,", "\n", " 51", " tokens"}},
    {"x=12345678; y = 3.14159", {"x", "=", "12345678", ";", " y", " =", " 3", ".", "14159"}},
    {"\u00BD \u00B2 \u2167 \u0661\u0662\u0663\u0664 \uFF11\uFF12",
     {"\u00BD", " \u00B2", " \u2167", " \u0661\u0662\u0663\u0664", " \uFF11\uFF12"}},
    {"caf\u00E9 na\u00EFve \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8 \u043F\u0440\u0438\u0432\u0435\u0442!!",
     {"caf\u00E9", " na\u00EFve", " \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8",
      " \u043F\u0440\u0438\u0432\u0435\u0442", "!!"}},
    {"\u0928\u092E\u0938\u094D\u0924\u0947 \u0E2A\u0E27\u0E31\u0E2A\u0E14\u0E35",
     {"\u0928\u092E\u0938", "\u094D", "\u0924", "\u0947", " \u0E2A\u0E27", "\u0E31", "\u0E2A\u0E14", "\u0E35"}},
    {"emoji \U0001F600\U0001F44D\U0001F3FD and \U0001F468\u200D\U0001F469\u200D\U0001F467 ok",
     {"emoji", " \U0001F600\U0001F44D\U0001F3FD", " and", " \U0001F468\u200D\U0001F469\u200D\U0001F467", " ok"}},
    {"a\u00A0b\u3000c \u2009d", {"a", "\u00A0", "b", "\u3000", "c", " ", "\u2009", "d"}},
    {"...!!!   ???\n", {"...!!!", "  ", " ???", "\n"}},
    {"\t\tdef f(x):\n\t\treturn x**2  # square\n",
     {"\t", "\t", "def", " f", "(", "x", "):", "\n\t", "\t", "return", " x", "**", "2", " ", " #", " square", "\n"}},
    {"'''", {"'''"}},
    {"'S'T'RE'LL'D", {"'", "S", "'", "T", "'", "RE", "'", "LL", "'", "D"}},
    {"  \n", {"  \n"}},
    {"", {}},
};
const SplitCase kLlama3Cases[] = {
    {"Hello world", {"Hello", " world"}},
    {"I'm here, they're THERE and we'VE gone; it's O'Neil's 'quote'",
     {"I",     "'m", " here", ",",  " they", "'re",   " THERE", " and", " we",   "'VE",
      " gone", ";",  " it",   "'s", " O",    "'Neil", "'s",     " '",   "quote", "'"}},
    {"  leading\tand   trailing  ", {" ", " leading", "\tand", "  ", " trailing", "  "}},
    {"line1\nline2\r\n\r\n  indented\n\n\n", {"line", "1", "\n", "line", "2", "\r\n\r\n", " ", " indented", "\n\n\n"}},
    {"Inc.,\n 51 tokens", {"Inc", ".,\n", " ", "51", " tokens"}},
    {"x=12345678; y = 3.14159", {"x", "=", "123", "456", "78", ";", " y", " =", " ", "3", ".", "141", "59"}},
    {"\u00BD \u00B2 \u2167 \u0661\u0662\u0663\u0664 \uFF11\uFF12",
     {"\u00BD", " ", "\u00B2", " ", "\u2167", " ", "\u0661\u0662\u0663", "\u0664", " ", "\uFF11\uFF12"}},
    {"caf\u00E9 na\u00EFve \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8 \u043F\u0440\u0438\u0432\u0435\u0442!!",
     {"caf\u00E9", " na\u00EFve", " \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8",
      " \u043F\u0440\u0438\u0432\u0435\u0442", "!!"}},
    {"\u0928\u092E\u0938\u094D\u0924\u0947 \u0E2A\u0E27\u0E31\u0E2A\u0E14\u0E35",
     {"\u0928\u092E\u0938", "\u094D\u0924", "\u0947", " \u0E2A\u0E27", "\u0E31\u0E2A\u0E14", "\u0E35"}},
    {"emoji \U0001F600\U0001F44D\U0001F3FD and \U0001F468\u200D\U0001F469\u200D\U0001F467 ok",
     {"emoji", " \U0001F600\U0001F44D\U0001F3FD", " and", " \U0001F468\u200D\U0001F469\u200D\U0001F467", " ok"}},
    {"a\u00A0b\u3000c \u2009d", {"a", "\u00A0b", "\u3000c", " ", "\u2009d"}},
    {"...!!!   ???\n", {"...!!!", "  ", " ???\n"}},
    {"\t\tdef f(x):\n\t\treturn x**2  # square\n",
     {"\t", "\tdef", " f", "(x", "):\n", "\t", "\treturn", " x", "**", "2", " ", " #", " square", "\n"}},
    {"'''", {"'''"}},
    {"'S'T'RE'LL'D", {"'S", "'T", "'RE", "'LL", "'D"}},
    {"  \n", {"  \n"}},
    {"", {}},
};
const SplitCase kQwen2Cases[] = {
    {"Hello world", {"Hello", " world"}},
    {"I'm here, they're THERE and we'VE gone; it's O'Neil's 'quote'",
     {"I",     "'m", " here", ",",  " they", "'re",   " THERE", " and", " we",   "'VE",
      " gone", ";",  " it",   "'s", " O",    "'Neil", "'s",     " '",   "quote", "'"}},
    {"  leading\tand   trailing  ", {" ", " leading", "\tand", "  ", " trailing", "  "}},
    {"line1\nline2\r\n\r\n  indented\n\n\n", {"line", "1", "\n", "line", "2", "\r\n\r\n", " ", " indented", "\n\n\n"}},
    {"Inc.,\n 51 tokens", {"Inc", ".,\n", " ", "5", "1", " tokens"}},
    {"x=12345678; y = 3.14159",
     {"x", "=", "1", "2", "3", "4", "5", "6", "7", "8", ";", " y", " =", " ", "3", ".", "1", "4", "1", "5", "9"}},
    {"\u00BD \u00B2 \u2167 \u0661\u0662\u0663\u0664 \uFF11\uFF12",
     {"\u00BD", " ", "\u00B2", " ", "\u2167", " ", "\u0661", "\u0662", "\u0663", "\u0664", " ", "\uFF11", "\uFF12"}},
    {"caf\u00E9 na\u00EFve \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8 \u043F\u0440\u0438\u0432\u0435\u0442!!",
     {"caf\u00E9", " na\u00EFve", " \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8",
      " \u043F\u0440\u0438\u0432\u0435\u0442", "!!"}},
    {"\u0928\u092E\u0938\u094D\u0924\u0947 \u0E2A\u0E27\u0E31\u0E2A\u0E14\u0E35",
     {"\u0928\u092E\u0938", "\u094D\u0924", "\u0947", " \u0E2A\u0E27", "\u0E31\u0E2A\u0E14", "\u0E35"}},
    {"emoji \U0001F600\U0001F44D\U0001F3FD and \U0001F468\u200D\U0001F469\u200D\U0001F467 ok",
     {"emoji", " \U0001F600\U0001F44D\U0001F3FD", " and", " \U0001F468\u200D\U0001F469\u200D\U0001F467", " ok"}},
    {"a\u00A0b\u3000c \u2009d", {"a", "\u00A0b", "\u3000c", " ", "\u2009d"}},
    {"...!!!   ???\n", {"...!!!", "  ", " ???\n"}},
    {"\t\tdef f(x):\n\t\treturn x**2  # square\n",
     {"\t", "\tdef", " f", "(x", "):\n", "\t", "\treturn", " x", "**", "2", " ", " #", " square", "\n"}},
    {"'''", {"'''"}},
    {"'S'T'RE'LL'D", {"'S", "'T", "'RE", "'LL", "'D"}},
    {"  \n", {"  \n"}},
    {"", {}},
};
const SplitCase kSmolLMCases[] = {
    {"Hello world", {"Hello", " world"}},
    {"I'm here, they're THERE and we'VE gone; it's O'Neil's 'quote'",
     {"I",     "'m", " here", ",",  " they", "'re", " THERE", " and", " we", "'",     "VE",
      " gone", ";",  " it",   "'s", " O",    "'",   "Neil",   "'s",   " '",  "quote", "'"}},
    {"  leading\tand   trailing  ", {" ", " leading", "\t", "and", "  ", " trailing", "  "}},
    {"line1\nline2\r\n\r\n  indented\n\n\n", {"line", "1", "\n", "line", "2", "\r\n\r\n ", " indented", "\n\n\n"}},
    {"Inc.,\n 51 tokens", {"Inc", ".,", "\n ", "5", "1", " tokens"}},
    {"x=12345678; y = 3.14159",
     {"x", "=", "1", "2", "3", "4", "5", "6", "7", "8", ";", " y", " =", " ", "3", ".", "1", "4", "1", "5", "9"}},
    {"\u00BD \u00B2 \u2167 \u0661\u0662\u0663\u0664 \uFF11\uFF12",
     {"\u00BD", " ", "\u00B2", " ", "\u2167", " ", "\u0661", "\u0662", "\u0663", "\u0664", " ", "\uFF11", "\uFF12"}},
    {"caf\u00E9 na\u00EFve \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8 \u043F\u0440\u0438\u0432\u0435\u0442!!",
     {"caf\u00E9", " na\u00EFve", " \u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8",
      " \u043F\u0440\u0438\u0432\u0435\u0442", "!!"}},
    {"\u0928\u092E\u0938\u094D\u0924\u0947 \u0E2A\u0E27\u0E31\u0E2A\u0E14\u0E35",
     {"\u0928\u092E\u0938", "\u094D", "\u0924", "\u0947", " \u0E2A\u0E27", "\u0E31", "\u0E2A\u0E14", "\u0E35"}},
    {"emoji \U0001F600\U0001F44D\U0001F3FD and \U0001F468\u200D\U0001F469\u200D\U0001F467 ok",
     {"emoji", " \U0001F600\U0001F44D\U0001F3FD", " and", " \U0001F468\u200D\U0001F469\u200D\U0001F467", " ok"}},
    {"a\u00A0b\u3000c \u2009d", {"a", "\u00A0", "b", "\u3000", "c", " ", "\u2009", "d"}},
    {"...!!!   ???\n", {"...!!!", "  ", " ???", "\n"}},
    {"\t\tdef f(x):\n\t\treturn x**2  # square\n",
     {"\t", "\t", "def", " f", "(", "x", "):", "\n\t", "\t", "return", " x", "**", "2", " ", " #", " square", "\n"}},
    {"'''", {"'''"}},
    {"'S'T'RE'LL'D", {"'", "S", "'", "T", "'", "RE", "'", "LL", "'", "D"}},
    {"  \n", {"  \n"}},
    {"", {}},
};

std::vector<std::string> pieces_of(PreType t, const std::string& s) {
  std::vector<std::string> out;
  for (const auto& [a, b] : pre_split(t, s)) out.push_back(s.substr(a, b - a));
  return out;
}

template <size_t N>
void check_cases(PreType t, const SplitCase (&cases)[N]) {
  for (const SplitCase& c : cases) EXPECT_EQ(pieces_of(t, c.text), c.pieces) << "text: " << c.text;
}

TEST(TokenizerPreSplit, Gpt2MatchesTokenizers) {
  check_cases(PreType::Gpt2, kGpt2Cases);
}
TEST(TokenizerPreSplit, Llama3MatchesTokenizers) {
  check_cases(PreType::Llama3, kLlama3Cases);
}
TEST(TokenizerPreSplit, Qwen2MatchesTokenizers) {
  check_cases(PreType::Qwen2, kQwen2Cases);
}
TEST(TokenizerPreSplit, SmolLMMatchesTokenizers) {
  check_cases(PreType::SmolLM, kSmolLMCases);
}

TEST(TokenizerPreSplit, InvalidUtf8IsCoveredByteForByte) {
  const std::string s = "ab\xff\xfe  c\xe2\x82 d\xc0\xaf 12\xed\xa0\x80x";  // stray, truncated, overlong, surrogate
  for (PreType t : {PreType::Gpt2, PreType::Llama3, PreType::Qwen2, PreType::SmolLM}) {
    std::string joined;
    size_t pos = 0;
    for (const auto& [a, b] : pre_split(t, s)) {
      EXPECT_EQ(a, pos);
      EXPECT_LT(a, b);
      joined += s.substr(a, b - a);
      pos = b;
    }
    EXPECT_EQ(joined, s);
  }
}

TEST(TokenizerPreSplit, Names) {
  PreType t;
  EXPECT_TRUE(pre_type_from_name("default", &t));  // llama.cpp's default, not GPT-2's
  EXPECT_EQ(t, PreType::Default);
  EXPECT_TRUE(pre_type_from_name("gpt-2", &t));
  EXPECT_EQ(t, PreType::Gpt2);
  EXPECT_TRUE(pre_type_from_name("llama-bpe", &t));
  EXPECT_EQ(t, PreType::Llama3);
  EXPECT_TRUE(pre_type_from_name("qwen2", &t));
  EXPECT_EQ(t, PreType::Qwen2);
  EXPECT_TRUE(pre_type_from_name("smollm", &t));
  EXPECT_EQ(t, PreType::SmolLM);
  EXPECT_FALSE(pre_type_from_name("deepseek-llm", &t));
}

}  // namespace
}  // namespace akvq
