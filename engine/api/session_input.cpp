// SessionInput: token rows and embedding rows with their kinds and content hashes.
#include <cstring>
#include <string>

#include "akvq/engine.h"
#include "akvq/error.h"

namespace akvq {

namespace {

// 64-bit finalizer (xor-shift-multiply): spreads every input bit over the output.
uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// Hash of a row's float bits (8 bytes at a time).
uint64_t hash_row(const float* row, int n) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ static_cast<uint64_t>(n);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(row);
  const size_t bytes = sizeof(float) * static_cast<size_t>(n);
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ mix64(w)) * 0x9e3779b97f4a7c15ULL;
  }
  if (i < bytes) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, bytes - i);
    h = (h ^ mix64(w)) * 0x9e3779b97f4a7c15ULL;
  }
  return mix64(h);
}

}  // namespace

void SessionInput::add_tokens(const std::vector<int32_t>& ids, TokenKind kind) {
  for (int32_t id : ids) add_token(id, kind);
}

void SessionInput::add_token(int32_t id, TokenKind kind) {
  ids_.push_back(id);
  kinds_.push_back(kind);
  hashes_.push_back(0);
  embd_index_.push_back(-1);
}

void SessionInput::add_embeddings(const float* rows, int n_rows, int n_embd, TokenKind kind, uint64_t content_id,
                                  int32_t placeholder) {
  if (!rows) throw InvalidArgument("[input] add_embeddings: rows is null");
  if (n_rows < 1 || n_embd < 1) {
    throw InvalidArgument("[input] add_embeddings: need at least one row of at least one value (got " +
                          std::to_string(n_rows) + " x " + std::to_string(n_embd) + ")");
  }
  if (n_embd_ != 0 && n_embd != n_embd_) {
    throw InvalidArgument("[input] add_embeddings: rows of width " + std::to_string(n_embd) + " after rows of width " +
                          std::to_string(n_embd_));
  }
  n_embd_ = n_embd;
  const int32_t first = static_cast<int32_t>(embd_.size() / static_cast<size_t>(n_embd));
  embd_.insert(embd_.end(), rows, rows + static_cast<size_t>(n_rows) * n_embd);
  for (int i = 0; i < n_rows; ++i) {
    uint64_t h = content_id != 0 ? mix64(content_id ^ mix64(static_cast<uint64_t>(i) + 1))
                                 : hash_row(rows + static_cast<size_t>(i) * n_embd, n_embd);
    if (h == 0) h = 1;  // 0 marks token rows
    ids_.push_back(placeholder);
    kinds_.push_back(kind);
    hashes_.push_back(h);
    embd_index_.push_back(first + i);
  }
}

SessionInput SessionInput::slice(size_t begin, size_t end) const {
  if (begin > end || end > size()) {
    throw InvalidArgument("[input] slice [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                          std::to_string(size()) + " rows");
  }
  SessionInput out;
  out.n_embd_ = n_embd_;
  for (size_t i = begin; i < end; ++i) {
    out.ids_.push_back(ids_[i]);
    out.kinds_.push_back(kinds_[i]);
    out.hashes_.push_back(hashes_[i]);
    if (embd_index_[i] < 0) {
      out.embd_index_.push_back(-1);
      continue;
    }
    out.embd_index_.push_back(static_cast<int32_t>(out.embd_.size() / static_cast<size_t>(n_embd_)));
    const float* row = embd_.data() + static_cast<size_t>(embd_index_[i]) * n_embd_;
    out.embd_.insert(out.embd_.end(), row, row + n_embd_);
  }
  return out;
}

}  // namespace akvq
