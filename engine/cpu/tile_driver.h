// ISA-independent scaffolding of the CPU matmul tiles (qgemm.h): building a TileKernels table
// from a family of tile functions and picking the table of a weight type. A family is a struct
// template Tiles<V, K> (V: the ISA's part, K: the weight type) with
//   Tiles::fn<R, T>       the tile of R weight rows x T tokens (a TileFn), for R <= kShape.max_r,
//                         T <= kShape.max_t
//   Tiles::kShape         a TileShape (largest tile, preferred tiles)
// The families' loops are in qgemm_q32_tiles.h, qgemm_kquant_tiles.h and gemm_float_tiles.h; the
// per-ISA files (AVX2: qgemm_q32.cpp ...; NEON: qgemm_q32_neon.cpp ...) only provide V and K.
#pragma once
#include <utility>

#include "core/dtype.h"
#include "cpu/qgemm.h"

// For the helpers of a tile loop (a super-block's unpack, a block of dots): GCC left some out of
// line, a call per row and super-block with a vzeroupper before it (half of the Q4_K decode time
// on Zen 5 with AVX-512).
#define AKVQ_ALWAYS_INLINE inline __attribute__((always_inline))

namespace akvq::cpu {

struct TileShape {
  int max_r, max_t;             // fn[R-1][T-1] is filled for every R <= max_r, T <= max_t
  int pref_r1, pref_r, pref_t;  // TileKernels::pref_*
  ActFormat act = ActFormat::Native;  // TileKernels::act, packing, row_unit
  uint8_t packing = 0;
  int row_unit = 1;
};

namespace tile_detail {

template <class Tiles, int R, int... T>
inline void fill_row(TileKernels& k, std::integer_sequence<int, T...>) {
  ((k.fn[R - 1][T] = &Tiles::template fn<R, T + 1>), ...);
}

template <class Tiles, int... R>
inline void fill(TileKernels& k, std::integer_sequence<int, R...>) {
  (fill_row<Tiles, R + 1>(k, std::make_integer_sequence<int, Tiles::kShape.max_t>{}), ...);
}

}  // namespace tile_detail

template <class Tiles>
TileKernels make_tile_table() {
  static_assert(Tiles::kShape.max_r <= kMaxTileR && Tiles::kShape.max_t <= kMaxTileT, "tile too large");
  TileKernels k;
  tile_detail::fill<Tiles>(k, std::make_integer_sequence<int, Tiles::kShape.max_r>{});
  k.pref_r1 = Tiles::kShape.pref_r1;
  k.pref_r = Tiles::kShape.pref_r;
  k.pref_t = Tiles::kShape.pref_t;
  k.act = Tiles::kShape.act;
  k.packing = Tiles::kShape.packing;
  k.row_unit = Tiles::kShape.row_unit;
  return k;
}

// The table of one family, built on first use.
template <class Tiles>
const TileKernels* tile_table() {
  static const TileKernels k = make_tile_table<Tiles>();
  return &k;
}

// The table of Tiles<V, K> for the K among Ks with K::kType == t, or nullptr (no kernels for t).
// V: the ISA's part of the family (vector traits or tiles), K: the weight type.
template <template <class, class> class Tiles, class V, class... Ks>
const TileKernels* find_tiles(DType t) {
  const TileKernels* found = nullptr;
  ((found = (found == nullptr && t == Ks::kType) ? tile_table<Tiles<V, Ks>>() : found), ...);
  return found;
}

}  // namespace akvq::cpu
