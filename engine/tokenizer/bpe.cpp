// `gpt2` byte-level BPE: pre-tokenize, map bytes to GPT-2's printable code points, then merge
// adjacent symbols by merge rank (lowest rank first, leftmost first on ties) with a priority
// queue over a linked list of symbols.
#include <akvq/error.h>

#include <queue>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace akvq {

namespace {
[[noreturn]] void fail(const std::string& msg) {
  throw FormatError("[tokenizer] " + msg);
}
}  // namespace

BpeTokenizer::BpeTokenizer(const TokenizerVocab& v) {
  if (!pre_type_from_name(v.pre, &pre_))
    fail("unsupported tokenizer.ggml.pre '" + v.pre +
         "' for gpt2 (supported: default, gpt-2, llama-bpe, qwen2, smollm)");
  ignore_merges_ = pre_ == PreType::Llama3;
  tokens_ = v.tokens;
  const size_t n = tokens_.size();
  types_.assign(n, TokenType::Normal);
  for (size_t i = 0; i < v.types.size(); ++i) types_[i] = static_cast<TokenType>(v.types[i]);
  bos_ = static_cast<int32_t>(v.bos);
  eos_ = static_cast<int32_t>(v.eos);
  eot_ = static_cast<int32_t>(v.eot);
  add_bos_ = v.add_bos.value_or(false);
  add_eos_ = v.add_eos.value_or(false);

  token_to_id_.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) token_to_id_.emplace(tokens_[i], static_cast<int32_t>(i));  // first wins
  for (int b = 0; b < 256; ++b) {
    std::string s;
    unicode::append_utf8(s, unicode::byte_to_cp(static_cast<uint8_t>(b)));
    auto it = token_to_id_.find(s);
    byte_token_[b] = it == token_to_id_.end() ? -1 : it->second;
  }

  merges_.reserve(v.merges.size() * 2);
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const std::string& m = v.merges[r];
    const size_t sp = m.find(' ', 1);
    auto where = [&]() { return "merge " + std::to_string(r) + " '" + m + "'"; };
    if (sp == std::string::npos || sp + 1 >= m.size()) fail(where() + " is not two tokens separated by a space");
    const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), iab = token_to_id_.find(a + b);
    if (ia == token_to_id_.end()) fail(where() + ": '" + a + "' is not a token");
    if (ib == token_to_id_.end()) fail(where() + ": '" + b + "' is not a token");
    if (iab == token_to_id_.end()) fail(where() + ": the merged '" + a + b + "' is not a token");
    merges_.emplace(pair_key(ia->second, ib->second), std::make_pair(static_cast<int32_t>(r), iab->second));
  }
  specials_.build(tokens_, types_);
}

void BpeTokenizer::encode_piece(const std::string& bytes, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    auto it = token_to_id_.find(unicode::bytes_to_bytelevel(bytes));
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // symbols: one per byte. A byte without a token (SmolLM2 has none for 0xF1 and 0xF2, the lead
  // bytes of U+40000..U+BFFFF) stays a symbol that no merge takes, and is dropped from the output,
  // as llama.cpp does with the same vocabulary (never the unknown token: in a byte-level vocabulary
  // that is often a control token such as <|endoftext|>, which plain text must not produce).
  constexpr int32_t kNoToken = -2;
  std::vector<int32_t> id;
  id.reserve(bytes.size());
  for (unsigned char b : bytes) id.push_back(byte_token_[b] >= 0 ? byte_token_[b] : kNoToken);
  const int n = static_cast<int>(id.size());
  if (n <= 1) {
    if (n == 1 && id[0] >= 0) out.push_back(id[0]);
    return;
  }
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank;
    int left, right;
    int32_t lid, rid;
    bool operator<(const Cand& o) const {  // max-heap order: smallest rank, then leftmost on top
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Cand> pq;
  auto push = [&](int l) {
    if (l < 0 || next[l] < 0) return;
    const int r = next[l];
    auto it = merges_.find(pair_key(id[l], id[r]));
    if (it != merges_.end()) pq.push(Cand{it->second.first, l, r, id[l], id[r]});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!pq.empty()) {
    const Cand c = pq.top();
    pq.pop();
    // stale when either side has been merged away or changed since it was queued
    if (id[c.left] != c.lid || next[c.left] != c.right || id[c.right] != c.rid) continue;
    id[c.left] = merges_.at(pair_key(c.lid, c.rid)).second;
    id[c.right] = -1;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  for (int i = 0; i >= 0; i = next[i]) {
    if (id[i] >= 0) out.push_back(id[i]);
  }
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
  for (const Fragment& f : specials_.split(text, parse_special)) {
    if (f.id >= 0) {
      out.push_back(f.id);
      continue;
    }
    const std::string raw = text.substr(f.begin, f.end - f.begin);
    for (const auto& [a, b] : pre_split(pre_, raw)) encode_piece(raw.substr(a, b - a), out);
  }
  if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

std::string BpeTokenizer::piece(int32_t id, bool render_special) const {
  check_id(id);
  const TokenType ty = types_[id];
  const std::string& t = tokens_[id];
  if (ty == TokenType::Control) return render_special ? t : std::string();
  if (ty == TokenType::UserDefined || ty == TokenType::Unknown) return t;
  // byte-level code points back to bytes; code points outside the map are kept as UTF-8
  std::string out;
  for (const unicode::Cp& c : unicode::decode_utf8(t)) {
    const int b = c.invalid ? -1 : unicode::byte_from_cp(c.cp);
    if (b >= 0)
      out += static_cast<char>(b);
    else
      out.append(t, c.off, c.len);
  }
  return out;
}

}  // namespace akvq
