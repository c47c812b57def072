// Hand-written matchers for the pre-tokenizer regexes (see pretokenize.h for the patterns).
// Each matcher returns the length in code points of the match starting at i (>= 1), trying the
// regex alternatives in order exactly as a backtracking engine would.
#include "tokenizer/pretokenize.h"

#include "tokenizer/unicode.h"

namespace akvq {

namespace {

using unicode::Cp;

inline bool is_l(const Cp& c) {
  return c.cls == unicode::kLetter;
}
inline bool is_n(const Cp& c) {
  return c.cls == unicode::kNumber;
}
inline bool is_s(const Cp& c) {
  return c.space;
}
inline bool is_crlf(const Cp& c) {
  return c.cp == '\r' || c.cp == '\n';
}
// [^\s\p{L}\p{N}]
inline bool is_other(const Cp& c) {
  return !c.space && c.cls != unicode::kLetter && c.cls != unicode::kNumber;
}
inline bool is_ascii_digit(const Cp& c) {
  return c.cp >= '0' && c.cp <= '9';
}
// [\p{P}\$\+<=>\^~\|] (llama.cpp's default pre-tokenizer's first regex)
inline bool is_default_punct(const Cp& c) {
  if (c.cls == unicode::kPunct) return true;
  switch (c.cp) {
    case '$': case '+': case '<': case '=': case '>': case '^': case '~': case '|': return true;
    default: return false;
  }
}
inline uint32_t ascii_lower(uint32_t cp) {
  return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
}

// 's|'t|'re|'ve|'m|'ll|'d at c[i]; case-insensitive for ASCII letters when `ci`.
size_t match_contraction(const Cp* c, size_t i, size_t n, bool ci) {
  if (c[i].cp != '\'' || i + 1 >= n) return 0;
  auto at = [&](size_t k) { return ci ? ascii_lower(c[k].cp) : c[k].cp; };
  const uint32_t a = at(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < n) {
    const uint32_t b = at(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

template <typename Pred>
size_t run_end(const Cp* c, size_t i, size_t n, Pred p) {
  while (i < n && p(c[i])) ++i;
  return i;
}

// \s+(?!\S)|\s+ at a whitespace code point c[i].
size_t match_space_tail(const Cp* c, size_t i, size_t n) {
  const size_t e = run_end(c, i, n, is_s);
  if (e == n) return e - i;         // followed by the end: \s+(?!\S) takes all
  if (e - 1 > i) return e - 1 - i;  // leave the last space to the next word
  return e - i;                     // a single space before a non-space: \s+
}

size_t match_gpt2(const Cp* c, size_t i, size_t n) {
  if (size_t k = match_contraction(c, i, n, false)) return k;
  const bool sp = c[i].cp == ' ' && i + 1 < n;
  const size_t j = sp ? i + 1 : i;
  if (is_l(c[j]) && (j == i || sp)) return run_end(c, j, n, is_l) - i;  //  ?\p{L}+
  if (is_l(c[i])) return run_end(c, i, n, is_l) - i;
  if (is_n(c[j])) return run_end(c, j, n, is_n) - i;  //  ?\p{N}+
  if (is_n(c[i])) return run_end(c, i, n, is_n) - i;
  if (is_other(c[j])) return run_end(c, j, n, is_other) - i;  //  ?[^\s\p{L}\p{N}]+
  if (is_other(c[i])) return run_end(c, i, n, is_other) - i;
  return match_space_tail(c, i, n);
}

size_t match_llama3(const Cp* c, size_t i, size_t n, size_t max_digits) {
  if (size_t k = match_contraction(c, i, n, true)) return k;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!is_crlf(c[i]) && !is_l(c[i]) && !is_n(c[i]) && i + 1 < n && is_l(c[i + 1]))
    return run_end(c, i + 1, n, is_l) - i;
  if (is_l(c[i])) return run_end(c, i, n, is_l) - i;
  // \p{N}{1,max}
  if (is_n(c[i])) {
    size_t e = i;
    while (e < n && e - i < max_digits && is_n(c[e])) ++e;
    return e - i;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t j = (c[i].cp == ' ' && i + 1 < n && is_other(c[i + 1])) ? i + 1 : i;
  if (is_other(c[j])) {
    const size_t e = run_end(c, j, n, is_other);
    return run_end(c, e, n, is_crlf) - i;
  }
  // \s*[\r\n]+ : up to and including the last \r or \n of the whitespace run
  const size_t e = run_end(c, i, n, is_s);
  for (size_t k = e; k > i; --k)
    if (is_crlf(c[k - 1])) return k - i;
  return match_space_tail(c, i, n);
}

}  // namespace

bool pre_type_from_name(const std::string& name, PreType* out) {
  if (name == "default")
    *out = PreType::Default;
  else if (name == "gpt-2" || name == "gpt2")
    *out = PreType::Gpt2;
  else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3")
    *out = PreType::Llama3;
  else if (name == "qwen2")
    *out = PreType::Qwen2;
  else if (name == "smollm")
    *out = PreType::SmolLM;
  else
    return false;
  return true;
}

std::vector<std::pair<size_t, size_t>> pre_split(PreType type, const std::string& text) {
  const std::vector<Cp> cps = unicode::decode_utf8(text);
  const Cp* c = cps.data();
  const size_t n = cps.size();
  std::vector<std::pair<size_t, size_t>> out;
  auto emit = [&](size_t a, size_t b) {  // code point range -> byte span
    out.emplace_back(c[a].off, b < n ? c[b].off : text.size());
  };
  // Splits c[a, b) with one matcher.
  auto split_range = [&](size_t a, size_t b) {
    for (size_t i = a; i < b;) {
      size_t len = 0;
      switch (type) {
        case PreType::Default:
        case PreType::Gpt2:
        case PreType::SmolLM: len = match_gpt2(c, i, b); break;
        case PreType::Llama3: len = match_llama3(c, i, b, 3); break;
        case PreType::Qwen2: len = match_llama3(c, i, b, 1); break;
      }
      if (len == 0) len = 1;  // unreachable: every code point matches some alternative
      emit(i, i + len);
      i += len;
    }
  };
  if (type == PreType::Default) {
    // [0-9][0-9][0-9] in c[a, b): each three ASCII digits a piece, what is between them too
    const auto digits3 = [&](size_t a, size_t b) {
      size_t start = a;
      for (size_t i = a; i + 3 <= b;) {
        if (is_ascii_digit(c[i]) && is_ascii_digit(c[i + 1]) && is_ascii_digit(c[i + 2])) {
          if (i > start) emit(start, i);
          emit(i, i + 3);
          i += 3;
          start = i;
        } else {
          ++i;
        }
      }
      if (start < b) emit(start, b);
    };
    // \p{N}+ in c[a, b), then digits3 in each piece
    const auto numbers = [&](size_t a, size_t b) {
      for (size_t i = a; i < b;) {
        const size_t e = is_n(c[i]) ? run_end(c, i, b, is_n) : run_end(c, i, b, [](const Cp& x) { return !is_n(x); });
        digits3(i, e);
        i = e;
      }
    };
    // [\p{P}\$\+<=>\^~\|]+ over the text; GPT-2's regex in each piece, then numbers
    for (size_t a = 0; a < n;) {
      const size_t b = is_default_punct(c[a]) ? run_end(c, a, n, is_default_punct)
                                             : run_end(c, a, n, [](const Cp& x) { return !is_default_punct(x); });
      for (size_t i = a; i < b;) {
        const size_t len = match_gpt2(c, i, b);
        numbers(i, i + len);
        i += len;
      }
      a = b;
    }
    return out;
  }
  if (type != PreType::SmolLM) {
    split_range(0, n);
    return out;
  }
  // SmolLM: isolate every number code point, then GPT-2 on the runs between them.
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!is_n(c[i])) continue;
    if (i > start) split_range(start, i);
    emit(i, i + 1);
    start = i + 1;
  }
  if (start < n) split_range(start, n);
  return out;
}

}  // namespace akvq
