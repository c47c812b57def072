// The quantized cache's row formats in the CUDA kernels' terms (cuda/kv_codec.cuh RowSpec).
#pragma once
#include "kv/quant.h"
#include "kv_codec.cuh"

namespace akvq::cuda {

inline akvq_cuda::RowSpec row_spec(const kv::RowCodec& c) {
  akvq_cuda::RowSpec s;
  s.n = c.n();
  s.group = c.group();
  s.bits = c.spec().bits;
  s.clip = c.spec().clip;
  s.gaussian = c.spec().levels == kv::Levels::Gaussian;
  return s;
}

}  // namespace akvq::cuda
