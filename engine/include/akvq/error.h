// One error model for the whole engine: typed exceptions whose message says where and what,
// e.g. "[gguf] tensor 'blk.3.attn_q.weight': data range exceeds file size (...)".
// The bindings map FormatError/InvalidArgument -> ValueError, IoError -> OSError,
// QueueFull -> _akvq.QueueFull, OutOfMemory -> MemoryError, everything else -> RuntimeError. Library code never ends the process.
#pragma once
#include <stdexcept>
#include <string>

namespace akvq {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A file or buffer that does not follow its format (GGUF, image, ...).
struct FormatError : Error {
  using Error::Error;
};
// A bad argument or option from the user (prompt too long, unknown kv mode, ...).
struct InvalidArgument : Error {
  using Error::Error;
};
// The operating system refused (file missing, mmap failed, ...).
struct IoError : Error {
  using Error::Error;
};
// A bounded queue is full: the request was refused, nothing changed (retry later).
struct QueueFull : Error {
  using Error::Error;
};
// A feature that exists but is unavailable in this build or on this machine (e.g. CUDA).
struct Unavailable : Error {
  using Error::Error;
};
// A device allocation failed (GPU memory): the message says how much and what was free.
struct OutOfMemory : Error {
  using Error::Error;
};

}  // namespace akvq
