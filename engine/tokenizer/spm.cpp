// `llama` SentencePiece BPE: split escaped text into characters, then repeatedly merge the
// adjacent pair whose concatenation is a token with the highest score (leftmost on ties);
// symbols that are not tokens fall back to <0xXX> byte tokens, else to the unknown token.
#include <akvq/error.h>

#include <queue>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace akvq {

namespace {

[[noreturn]] void fail(const std::string& msg) {
  throw FormatError("[tokenizer] " + msg);
}

const char kSpaceMark[] = "\xE2\x96\x81";  // U+2581

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xAB>" -> 0xAB, -1 otherwise
int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string escape_spaces(const std::string& s) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  for (char c : s) {
    if (c == ' ')
      out += kSpaceMark;
    else
      out += c;
  }
  return out;
}

}  // namespace

SpmTokenizer::SpmTokenizer(const TokenizerVocab& v) {
  tokens_ = v.tokens;
  const size_t n = tokens_.size();
  if (v.scores.empty()) fail("tokenizer.ggml.scores is required for the llama (SentencePiece) tokenizer");
  scores_ = v.scores;
  types_.assign(n, TokenType::Normal);
  for (size_t i = 0; i < v.types.size(); ++i) types_[i] = static_cast<TokenType>(v.types[i]);
  bos_ = static_cast<int32_t>(v.bos);
  eos_ = static_cast<int32_t>(v.eos);
  eot_ = static_cast<int32_t>(v.eot);
  unk_ = static_cast<int32_t>(v.unk);
  add_bos_ = v.add_bos.value_or(true);
  add_eos_ = v.add_eos.value_or(false);
  add_space_prefix_ = v.add_space_prefix.value_or(true);
  prepend_scheme_ = v.prepend_scheme;
  if (!prepend_scheme_.empty() && prepend_scheme_ != "always" && prepend_scheme_ != "first" &&
      prepend_scheme_ != "never")
    fail("akvq.tokenizer.prepend_scheme '" + prepend_scheme_ + "' is not one of always, first, never");
  if (prepend_scheme_ == "never") add_space_prefix_ = false;

  for (int& b : byte_token_) b = -1;
  for (size_t i = 0; i < n; ++i) {
    const TokenType ty = types_[i];
    const int32_t id = static_cast<int32_t>(i);
    if (ty == TokenType::Byte) {
      const int b = parse_byte_token(tokens_[i]);
      if (b < 0) fail("byte token " + std::to_string(i) + " '" + tokens_[i] + "' is not of the form <0xXX>");
      if (byte_token_[b] < 0) byte_token_[b] = id;
    } else if (ty == TokenType::Unknown) {
      if (unk_ < 0) unk_ = id;
    } else if (ty == TokenType::Normal || ty == TokenType::UserDefined || ty == TokenType::Undefined) {
      piece_to_id_.emplace(tokens_[i], id);  // first wins
    }
  }
  specials_.build(tokens_, types_);
}

void SpmTokenizer::encode_escaped(const std::string& text, std::vector<int32_t>& out) const {
  // symbols: one per UTF-8 character (an invalid byte is its own symbol)
  struct Sym {
    size_t off, len;
    int prev, next;
  };
  std::vector<Sym> sym;
  for (size_t i = 0; i < text.size();) {
    size_t len = unicode::utf8_len_at(text, i);
    if (len == 0) len = 1;
    const int k = static_cast<int>(sym.size());
    sym.push_back(Sym{i, len, k - 1, -1});
    if (k > 0) sym[k - 1].next = k;
    i += len;
  }
  if (sym.empty()) return;
  struct Cand {
    float score;
    int left, right;
    size_t len;                            // merged byte length, to detect stale entries
    bool operator<(const Cand& o) const {  // highest score, then leftmost on top
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Cand> pq;
  std::string buf;
  auto push = [&](int l) {
    if (l < 0 || sym[l].next < 0) return;
    const int r = sym[l].next;
    buf.assign(text, sym[l].off, sym[l].len + sym[r].len);
    auto it = piece_to_id_.find(buf);
    if (it != piece_to_id_.end()) pq.push(Cand{scores_[it->second], l, r, buf.size()});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) push(i);
  while (!pq.empty()) {
    const Cand c = pq.top();
    pq.pop();
    Sym& L = sym[c.left];
    if (L.len == 0 || L.next != c.right || L.len + sym[c.right].len != c.len) continue;  // stale
    Sym& R = sym[c.right];
    L.len += R.len;
    R.len = 0;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = c.left;
    push(L.prev);
    push(c.left);
  }
  bool prev_unknown = false;
  for (int i = 0; i >= 0; i = sym[i].next) {
    buf.assign(text, sym[i].off, sym[i].len);
    auto it = piece_to_id_.find(buf);
    if (it != piece_to_id_.end()) {
      out.push_back(it->second);
      prev_unknown = false;
      continue;
    }
    bool all_bytes = true;
    for (unsigned char b : buf) all_bytes = all_bytes && byte_token_[b] >= 0;
    if (all_bytes) {
      for (unsigned char b : buf) out.push_back(byte_token_[b]);
      prev_unknown = false;
    } else if (unk_ >= 0 && !prev_unknown) {  // a run of unknown characters is one unknown token
      out.push_back(unk_);
      prev_unknown = true;
    }
  }
}

std::vector<int32_t> SpmTokenizer::encode(const std::string& text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
  bool prev_special = true;  // the space prefix goes before the text and after each special token
  for (const Fragment& f : specials_.split(text, parse_special)) {
    if (f.id >= 0) {
      out.push_back(f.id);
      prev_special = true;
      continue;
    }
    std::string raw = text.substr(f.begin, f.end - f.begin);
    bool prefix = add_space_prefix_ && prev_special;
    if (!prepend_scheme_.empty()) {  // Hugging Face's Metaspace rule
      if (prepend_scheme_ == "first" && f.begin != 0) prefix = false;
      if (raw[0] == ' ') prefix = false;
    }
    if (prefix) raw.insert(raw.begin(), ' ');
    encode_escaped(escape_spaces(raw), out);
    prev_special = false;
  }
  if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

std::string SpmTokenizer::piece(int32_t id, bool render_special) const {
  check_id(id);
  const std::string& t = tokens_[id];
  switch (types_[id]) {
    case TokenType::Control: return render_special ? t : std::string();
    case TokenType::Byte: return std::string(1, static_cast<char>(parse_byte_token(t)));
    case TokenType::UserDefined:
    case TokenType::Unknown: return t;
    default: break;
  }
  std::string out;
  for (size_t i = 0; i < t.size();) {
    if (t.compare(i, 3, kSpaceMark) == 0) {
      out += ' ';
      i += 3;
    } else {
      out += t[i++];
    }
  }
  return out;
}

std::string SpmTokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    std::string p = piece(id, render_special);
    if (p.empty()) continue;
    if (first && add_space_prefix_ && p[0] == ' ') p.erase(0, 1);
    first = false;
    out += p;
  }
  return out;
}

}  // namespace akvq
