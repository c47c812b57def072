// Tokenizer unit tests: GPT-2 byte mapping, UTF-8 decoding, code point classes, BPE merging
// order, SentencePiece merging/byte fallback, special tokens, decode, and malformed vocabularies.
#include <akvq/error.h>
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace akvq {
namespace {

using Ids = std::vector<int32_t>;

// ---- byte mapping, UTF-8, classes ----

TEST(TokenizerUnicode, ByteMapIsGpt2s) {
  std::set<uint32_t> images;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = unicode::byte_to_cp(static_cast<uint8_t>(b));
    images.insert(cp);
    EXPECT_EQ(unicode::byte_from_cp(cp), b);
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    if (printable)
      EXPECT_EQ(cp, static_cast<uint32_t>(b));
    else
      EXPECT_GE(cp, 256u);
  }
  EXPECT_EQ(images.size(), 256u);
  EXPECT_EQ(unicode::byte_to_cp(0x00), 0x100u);
  EXPECT_EQ(unicode::byte_to_cp(' '), 0x120u);   // Ġ
  EXPECT_EQ(unicode::byte_to_cp('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(unicode::byte_to_cp(0x7F), 0x121u);
  EXPECT_EQ(unicode::byte_to_cp(0xAD), 0x143u);  // the last one
  EXPECT_EQ(unicode::byte_from_cp('A'), 'A');
  EXPECT_EQ(unicode::byte_from_cp(0x20), -1);  // a space is not an image
  EXPECT_EQ(unicode::byte_from_cp(0x2581), -1);
  EXPECT_EQ(unicode::bytes_to_bytelevel(" hi\n"), "\u0120hi\u010A");
  EXPECT_EQ(unicode::bytes_to_bytelevel("\xC3\xA9"), "\u00C3\u00A9");
}

TEST(TokenizerUnicode, DecodeUtf8MarksInvalidBytes) {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xFF\xC0\xAF\xED\xA0\x80\xE2\x82";
  const auto cps = unicode::decode_utf8(s);
  std::vector<uint32_t> got;
  std::vector<bool> inv;
  for (const auto& c : cps) {
    got.push_back(c.cp);
    inv.push_back(c.invalid);
  }
  // a é € 😀, then 0xFF, overlong C0 AF (2 bytes), surrogate ED A0 80 (3 bytes), truncated E2 82 (2 bytes)
  const std::vector<uint32_t> want = {'a',    0xE9,   0x20AC, 0x1F600, 0xFFFD, 0xFFFD,
                                      0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD,  0xFFFD, 0xFFFD};
  EXPECT_EQ(got, want);
  for (size_t i = 0; i < cps.size(); ++i) EXPECT_EQ(inv[i], i >= 4);
  EXPECT_TRUE(unicode::valid_utf8("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(unicode::valid_utf8("\xE2\x82"));
}

TEST(TokenizerUnicode, Classes) {
  EXPECT_EQ(unicode::classify('a'), unicode::kLetter);
  EXPECT_EQ(unicode::classify(0x4E2D), unicode::kLetter);  // 中
  EXPECT_EQ(unicode::classify(0x0928), unicode::kLetter);  // न
  EXPECT_EQ(unicode::classify(0x094D), unicode::kOther);   // virama (Mn)
  EXPECT_EQ(unicode::classify('7'), unicode::kNumber);
  EXPECT_EQ(unicode::classify(0xBD), unicode::kNumber);    // ½ (No)
  EXPECT_EQ(unicode::classify(0x2167), unicode::kNumber);  // Ⅷ (Nl)
  EXPECT_EQ(unicode::classify(0x0663), unicode::kNumber);  // ٣ (Nd)
  EXPECT_EQ(unicode::classify(','), unicode::kPunct);
  EXPECT_EQ(unicode::classify(0x00AB), unicode::kPunct);   // «
  EXPECT_EQ(unicode::classify('+'), unicode::kOther);      // Sm
  EXPECT_EQ(unicode::classify(0x1F600), unicode::kOther);  // emoji (So)
  EXPECT_EQ(unicode::classify(0x10FFFF), unicode::kOther);
  for (uint32_t cp : {0x09u, 0x0Au, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2009u, 0x2028u, 0x3000u})
    EXPECT_TRUE(unicode::is_space(cp)) << cp;
  for (uint32_t cp : {0x08u, 0x1Cu, 0x1Fu, 0x200Bu, 0xFEFFu, 0x2581u, 0x78u}) EXPECT_FALSE(unicode::is_space(cp)) << cp;
}

// ---- a tiny byte-level BPE vocabulary ----

// 256 byte tokens (in byte order: id == byte) followed by `extra` tokens and the merges.
TokenizerVocab byte_vocab(const std::vector<std::string>& extra, const std::vector<std::string>& merges) {
  TokenizerVocab v;
  v.model = "gpt2";
  v.pre = "default";
  for (int b = 0; b < 256; ++b) {
    std::string s;
    unicode::append_utf8(s, unicode::byte_to_cp(static_cast<uint8_t>(b)));
    v.tokens.push_back(s);
  }
  for (const auto& e : extra) v.tokens.push_back(e);
  v.merges = merges;
  return v;
}

TEST(TokenizerBpe, MergesByRankLeftmostFirst) {
  // 256 aa, 257 aaa, 258 aaaa, 259 Ġa, 260 Ġaa
  auto v = byte_vocab({"aa", "aaa", "aaaa", "\u0120a", "\u0120aa"}, {"a a", "aa aa", "\u0120 a", "\u0120a a", "aa a"});
  auto t = Tokenizer::from_vocab(v);
  EXPECT_EQ(t->encode("aa", false, false), (Ids{256}));
  EXPECT_EQ(t->encode("aaa", false, false), (Ids{257}));   // (aa)a, then "aa a" (rank 4)
  EXPECT_EQ(t->encode("aaaa", false, false), (Ids{258}));  // (aa)(aa) -> aaaa (rank 1 beats rank 4)
  EXPECT_EQ(t->encode("aaaaa", false, false), (Ids{258, 'a'}));
  // Ġ a a a: "a a" (rank 0, leftmost) -> Ġ aa a; "Ġ aa" is no merge, "aa a" (rank 4) -> Ġ aaa
  EXPECT_EQ(t->encode(" aaa", false, false), (Ids{' ', 257}));
  EXPECT_EQ(t->encode(" a", false, false), (Ids{259}));
  EXPECT_EQ(t->decode(t->encode(" aaa x\n", false, false)), " aaa x\n");
}

TEST(TokenizerBpe, UnknownBytesAndSpecials) {
  auto v = byte_vocab({"<|im_start|>", "<|im_end|>", "<|im_end|>x", "<tool>"}, {});
  v.types.assign(v.tokens.size(), 1);
  v.types[256] = v.types[257] = v.types[258] = 3;  // control
  v.types[259] = 4;                                // user-defined
  v.eos = 257;
  auto t = Tokenizer::from_vocab(v);
  EXPECT_EQ(t->encode("<|im_start|>hi<|im_end|>xy<tool>", false, true), (Ids{256, 'h', 'i', 258, 'y', 259}));
  // control tokens are text without parse_special; user-defined ones are still matched
  const Ids plain = t->encode("<|im_end|><tool>", false, false);
  EXPECT_EQ(plain.size(), std::string("<|im_end|>").size() + 1);
  EXPECT_EQ(plain.back(), 259);
  EXPECT_EQ(t->decode({256, 'h', 257}), "h");
  EXPECT_EQ(t->decode({256, 'h', 257}, true), "<|im_start|>h<|im_end|>");
  EXPECT_EQ(t->piece(259), "<tool>");
  EXPECT_TRUE(t->is_eog(257));
  EXPECT_EQ(t->eot(), 257);  // found by text
  EXPECT_FALSE(t->is_eog(256));
  EXPECT_FALSE(t->add_bos());
  EXPECT_THROW(t->piece(-1), InvalidArgument);
  EXPECT_THROW(t->decode({100000}), InvalidArgument);
}

TEST(TokenizerBpe, AddBosEos) {
  auto v = byte_vocab({"<s>", "</s>"}, {});
  v.bos = 256;
  v.eos = 257;
  v.add_bos = true;
  v.add_eos = true;
  auto t = Tokenizer::from_vocab(v);
  EXPECT_EQ(t->encode("a", true, true), (Ids{256, 'a', 257}));
  EXPECT_EQ(t->encode("a", false, true), (Ids{'a'}));
  EXPECT_EQ(t->encode("", true, true), (Ids{256, 257}));
}

// ---- a tiny SentencePiece vocabulary ----

TokenizerVocab spm_vocab(bool byte_fallback) {
  TokenizerVocab v;
  v.model = "llama";
  auto add = [&](const std::string& s, float score, int type) {
    v.tokens.push_back(s);
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  if (byte_fallback)
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      add(buf, 0, 6);
    }
  const char* pieces[] = {"\u2581",  "h",       "e",         "l",  "o",          "w",     "r",
                          "d",       "\u2581h", "ll",        "he", "llo",        "hello", "\u2581hello",
                          "\u2581w", "or",      "\u2581wor", "ld", "\u2581world"};
  float score = -1;
  for (const char* p : pieces) add(p, score--, 1);
  v.bos = 1;
  v.eos = 2;
  return v;
}

TEST(TokenizerSpm, MergesByScoreWithSpacePrefix) {
  auto v = spm_vocab(true);
  auto t = Tokenizer::from_vocab(v);
  auto id = [&](const std::string& s) {
    for (int32_t i = 0; i < t->n_vocab(); ++i)
      if (t->text(i) == s) return i;
    return -1;
  };
  // "▁hello": ▁h (score -9) is the best first pair? scores: ▁h -9, ll -10, he -11 ... highest first
  const Ids got = t->encode("hello world", true, true);
  EXPECT_EQ(got.front(), 1);  // BOS added by default for llama
  EXPECT_TRUE(t->add_bos());
  std::string joined;
  for (size_t i = 1; i < got.size(); ++i) joined += t->text(got[i]);
  EXPECT_EQ(joined, "\u2581hello\u2581world");
  // ▁h merges first (score -9 > -10), so "hello" can never form: ▁h + e + llo
  EXPECT_EQ(got, (Ids{1, id("\u2581h"), id("e"), id("llo"), id("\u2581world")}));
  EXPECT_EQ(t->decode(got), "hello world");
  // byte fallback for characters without a piece: € = E2 82 AC
  EXPECT_EQ(t->encode("\xE2\x82\xAC", false, true), (Ids{id("\u2581"), 3 + 0xE2, 3 + 0x82, 3 + 0xAC}));
  EXPECT_EQ(t->decode({3 + 0xE2, 3 + 0x82, 3 + 0xAC}), "\xE2\x82\xAC");
}

TEST(TokenizerSpm, UnknownWithoutByteFallback) {
  auto v = spm_vocab(false);
  v.add_space_prefix = false;
  auto t = Tokenizer::from_vocab(v);
  // a run of unknown characters is one <unk>, as SentencePiece does
  const Ids got = t->encode("\xE2\x82\xAC\xE2\x82\xACh", false, true);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], 0);
  EXPECT_EQ(t->text(got[1]), "h");
}

TEST(TokenizerSpm, SpacePrefixAfterSpecialTokens) {
  auto v = spm_vocab(true);
  auto t = Tokenizer::from_vocab(v);
  const Ids got = t->encode("</s>hello", false, true);
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[0], 2);
  EXPECT_EQ(t->text(got[1]), "\u2581h");
  EXPECT_TRUE(t->is_eog(2));
}

// ---- arbitrary bytes: no crash, exact round trip ----

TEST(TokenizerRoundTrip, RandomBytes) {
  auto bv = byte_vocab({"aa", "\u0120a", "\u00C3\u00A9"}, {"a a", "\u0120 a", "\u00C3 \u00A9"});
  std::vector<std::unique_ptr<Tokenizer>> toks;
  for (const char* pre : {"default", "llama-bpe", "qwen2", "smollm"}) {
    bv.pre = pre;
    toks.push_back(Tokenizer::from_vocab(bv));
  }
  toks.push_back(Tokenizer::from_vocab(spm_vocab(true)));
  const char alphabet[] = {'a', ' ', '\n', '\r', '\t', '1', '\'', 's', 'h', 'e', 'l', 'o', '!', '<', '>'};
  uint32_t state = 12345;
  auto rnd = [&]() { return state = state * 1664525u + 1013904223u; };
  for (int it = 0; it < 3000; ++it) {
    std::string s;
    const int n = static_cast<int>(rnd() % 40);
    for (int i = 0; i < n; ++i) {
      const uint32_t r = rnd();
      s += (r >> 24) % 3 == 0 ? static_cast<char>(r & 0xFF) : alphabet[(r >> 8) % sizeof alphabet];
    }
    if (s.find("\xE2\x96\x81") != std::string::npos) continue;  // U+2581 decodes to a space in SPM
    for (const auto& t : toks) {
      const Ids ids = t->encode(s, false, false);  // "<s>" may occur: keep it text
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < t->n_vocab());
      ASSERT_EQ(t->decode(ids), s);
    }
  }
}

// ---- malformed vocabularies ----

void expect_format_error(const TokenizerVocab& v, const std::string& needle) {
  try {
    Tokenizer::from_vocab(v);
    FAIL() << "expected FormatError containing '" << needle << "'";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TokenizerMalformed, Vocabularies) {
  auto ok = byte_vocab({"ab"}, {"a b"});
  EXPECT_NO_THROW(Tokenizer::from_vocab(ok));
  auto v = ok;
  v.model = "wordpiece";
  expect_format_error(v, "unsupported tokenizer.ggml.model 'wordpiece'");
  v = ok;
  v.pre = "deepseek-llm";
  expect_format_error(v, "unsupported tokenizer.ggml.pre 'deepseek-llm'");
  v = ok;
  v.merges = {"a q9"};
  expect_format_error(v, "'q9' is not a token");
  v.merges = {"zz b"};
  expect_format_error(v, "'zz' is not a token");
  v.merges = {"b a"};
  expect_format_error(v, "the merged 'ba' is not a token");
  v.merges = {"ab"};
  expect_format_error(v, "not two tokens");
  v.merges = {"a "};
  expect_format_error(v, "not two tokens");
  v = ok;
  v.eos = 257;
  expect_format_error(v, "eos id 257 is out of range");
  v.eos = -5;
  expect_format_error(v, "eos id -5");
  v = ok;
  v.bos = 1000;
  expect_format_error(v, "bos id 1000");
  v = ok;
  v.types = {1, 2};
  expect_format_error(v, "token_type has 2 entries for 257 tokens");
  v.types.assign(257, 1);
  v.types[7] = 9;
  expect_format_error(v, "token 7 has invalid token type 9");
  v = ok;
  v.scores = {0.f};
  expect_format_error(v, "scores has 1 entries");
  v = ok;
  v.tokens.clear();
  v.merges.clear();
  expect_format_error(v, "is empty");
  auto s = spm_vocab(true);
  s.scores.clear();
  expect_format_error(s, "scores is required");
  s = spm_vocab(true);
  s.tokens[3] = "<0xZZ>";
  expect_format_error(s, "byte token 3 '<0xZZ>'");
}

// ---- from_gguf on an in-memory GGUF ----

struct GgufBuilder {
  std::string buf;
  uint64_t n_kv = 0;
  void u32(uint32_t v) { buf.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { buf.append(reinterpret_cast<const char*>(&v), 8); }
  void str(const std::string& s) {
    u64(s.size());
    buf += s;
  }
  void kv_str(const std::string& k, const std::string& v) {
    str(k);
    u32(8);
    str(v);
    ++n_kv;
  }
  void kv_u32(const std::string& k, uint32_t v) {
    str(k);
    u32(4);
    u32(v);
    ++n_kv;
  }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    str(k);
    u32(9);
    u32(8);
    u64(v.size());
    for (const auto& s : v) str(s);
    ++n_kv;
  }
  std::unique_ptr<gguf::File> file() const {
    std::string out = "GGUF";
    auto put32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
    auto put64 = [&](uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
    put32(3);
    put64(0);
    put64(n_kv);
    out += buf;
    while (out.size() % 32) out += '\0';
    return gguf::File::from_bytes(out.data(), out.size(), "test.gguf");
  }
};

TEST(TokenizerGguf, FromGguf) {
  auto v = byte_vocab({"ab", "<|im_end|>"}, {"a b"});
  GgufBuilder g;
  g.kv_str("general.architecture", "llama");
  g.kv_str("tokenizer.ggml.model", "gpt2");
  g.kv_str("tokenizer.ggml.pre", "smollm");
  g.kv_strs("tokenizer.ggml.tokens", v.tokens);
  g.kv_strs("tokenizer.ggml.merges", v.merges);
  g.kv_u32("tokenizer.ggml.eos_token_id", 257);
  auto t = Tokenizer::from_gguf(*g.file());
  EXPECT_EQ(t->n_vocab(), 258);
  EXPECT_EQ(t->encode("ab12", true, true), (Ids{256, '1', '2'}));
  EXPECT_EQ(t->eos(), 257);
  EXPECT_EQ(t->bos(), -1);

  GgufBuilder bad;
  bad.kv_strs("tokenizer.ggml.tokens", v.tokens);
  EXPECT_THROW(Tokenizer::from_gguf(*bad.file()), FormatError);
  bad.kv_str("tokenizer.ggml.model", "rwkv");
  try {
    Tokenizer::from_gguf(*bad.file());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'rwkv'"), std::string::npos);
  }
}

}  // namespace
}  // namespace akvq
