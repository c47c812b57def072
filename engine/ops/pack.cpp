// PackedWeights (ops/pack.h).
#include "ops/pack.h"

#include <akvq/error.h>

#include <cstdlib>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu/qgemm.h"

namespace akvq::ops {

void PackedWeights::FreeDeleter::operator()(uint8_t* p) const {
  std::free(p);
}

bool PackedWeights::pack(TensorView& w, bool batch_only) {
  const uint8_t packing = cpu::preferred_packing(w.type, w.rows(), batch_only, w.act_bits);
  if (packing == cpu::kPackNone || !w.data || w.n_dims < 1) return false;
  const size_t bytes = w.row_bytes() * static_cast<size_t>(w.rows());
  // Large copies start on a 2 MiB boundary and ask for transparent huge pages: decode streams
  // every weight once per token, and 4 KiB pages cost a TLB walk every 64 cache lines.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t align = bytes >= kHuge ? kHuge : 64;
  void* p = nullptr;
  if (posix_memalign(&p, align, bytes ? bytes : 64) != 0) {
    throw Error("[ops] out of memory packing '" + w.name + "' (" + std::to_string(bytes) + " bytes)");
  }
#ifdef MADV_HUGEPAGE
  if (align == kHuge) ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: no error if refused
#endif
  std::unique_ptr<uint8_t, FreeDeleter> buf(static_cast<uint8_t*>(p));
  cpu::pack_rows(w.type, packing, static_cast<const uint8_t*>(w.data), buf.get(), w.rows(), w.ne[0]);
  w.packed = buf.get();
  w.packing = packing;
  bufs_.push_back(std::move(buf));
  bytes_ += bytes;
  return true;
}

}  // namespace akvq::ops
