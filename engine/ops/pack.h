// Weights repacked once at load for the active matmul kernels (cpu/qgemm.h: Packing), owned by
// the model that binds them. A packed weight keeps its file view (`data`, used by everything but
// the matmul, and by the matmul when another ISA is active) and gains `packed` / `packing`.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace akvq::ops {

class PackedWeights {
 public:
  // Gives w a packed copy when the active kernels prefer another layout for its type; else
  // leaves it as it is. Returns true when it packed. Costs w.nbytes of memory.
  // batch_only: w is only ever multiplied by many rows at once (a vision tower, a projector), so
  // layouts that are slow for a single row may be chosen (cpu/qgemm.h: kPackP16).
  bool pack(TensorView& w, bool batch_only = false);
  size_t bytes() const { return bytes_; }  // memory held by the packed copies

 private:
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> bufs_;
  size_t bytes_ = 0;
};

}  // namespace akvq::ops
