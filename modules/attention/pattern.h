// The pattern engine of the patterned sparse blocks (../shared/ATTENTION_CATALOG.md, "Sequence
// blocks": sparse_transformer, longformer, bigbird, etc, star, bp_transformer, diet, multiscale,
// jukebox, gmat, handcrafted). A look-alike builds the N×N scores and masks them; these never
// form them. Each block declares, for the map it meets, the P keys every query reads (a
// Pattern), and the engine gathers exactly those keys and values, a chunk of queries at a time:
// N·P scores, never N². The same Pattern object is what the tests check the computed attention
// against (the support of an output token's gradient must be the declared keys).
//
// Keys are positions in the block's key sequence: the H·W tokens in raster order (pixel
// y·W + x), then the block's extra keys (pooled cells, global summaries, memory slots, a relay),
// in the order the block appends them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "attention/sequence.h"

namespace attnseg {

// What every query reads on one map. index[g, i, p] is the p-th key of query i in head group g;
// slots with valid false are not read (off the map, a repeat, padding to the widest row). G is 1
// when all heads share the pattern, the head count when each head has its own.
struct Pattern {
  at::Tensor index;  // [G, N, P] long
  at::Tensor valid;  // [G, N, P] bool

  int64_t groups() const { return index.size(0); }
  int64_t queries() const { return index.size(1); }
  int64_t width() const { return index.size(2); }
  // The keys query `query` of group `group` reads, ascending, each once.
  std::vector<int64_t> reads(int64_t query, int64_t group = 0) const;
  // Valid (query, key) pairs summed over the groups.
  int64_t pairs() const;
  Pattern to(c10::Device device) const;
};

using Offsets = std::vector<std::pair<int64_t, int64_t>>;  // (dy, dx)

// The (2·radius_y+1)×(2·radius_x+1) window of offsets, each a multiple of `dilation`, centre first.
Offsets window_offsets(int64_t radius_y, int64_t radius_x, int64_t dilation = 1);

// Query (y, x) of an H×W map reads the pixels (y+dy, x+dx) that are on the map.
Pattern offset_pattern(int64_t height, int64_t width, const Offsets& offsets);

// Query i reads, for each query of `rows` ([N, P] long, −1 for none), those keys.
Pattern pattern_from_rows(const at::Tensor& rows);

// Every one of `queries` queries reads the same `keys` (1-D long).
Pattern same_keys(int64_t queries, const at::Tensor& keys);

// Query i reads what it reads in every part (the parts' groups equal, or 1 and broadcast); a key
// that an earlier part already gives query i is not read again, so no key counts twice.
Pattern concat_patterns(const std::vector<Pattern>& parts);

// One group per head from per-head patterns of one query count (rows padded to the widest).
Pattern stack_groups(const std::vector<Pattern>& heads);

// The queries cut into tiles of queries that share most of their keys (neighbouring pixels, a
// row, a block): a tile's queries are scored against the union of their keys in one matrix
// product, each masked to its own keys. The same attention as the pattern, computed with dense
// products on small tiles instead of one gather and one vector product per query.
struct TiledPattern {
  at::Tensor members;  // [T, Q] long: each tile's queries, −1 pads
  at::Tensor keys;     // [T, U] long: the union of their keys, ascending, −1 pads
  at::Tensor reads;    // [T, Q, U] bool: member q reads key u
  at::Tensor slot;     // [N] long: where query i sits in the tiles, t·Q + its place in tile t

  TiledPattern to(c10::Device device) const;
};

// Tiles the queries of a one-group pattern: queries with the same tile_of id (any integers)
// share a tile; tiles are numbered in ascending order of their ids.
TiledPattern tile_pattern(const Pattern& pattern, const at::Tensor& tile_of);

// The tile of each pixel of an H×W map cut into rows×cols rectangles (raster order of tiles,
// edge tiles cut to the map): [H·W] long.
at::Tensor rectangle_tiles(int64_t height, int64_t width, int64_t rows, int64_t cols);

// An H×W map cut into rows×cols regions (region (i, j) spans rows ⌊i·H/rows⌋ to
// ⌊(i+1)·H/rows⌋ and likewise columns; rows and cols are cut to the map's size): the region of
// every pixel, the pixels of every region and its centre pixel, regions in raster order.
struct Regions {
  at::Tensor region_of;                        // [H·W] long
  std::vector<std::vector<int64_t>> pixels;    // per region, ascending
  std::vector<int64_t> centre;                 // per region
  int64_t count() const { return static_cast<int64_t>(centre.size()); }
};
Regions map_regions(int64_t height, int64_t width, int64_t rows, int64_t cols);

// 0, 1, …, H·W−1: the support of a query that reads a summary of the whole map.
std::vector<int64_t> every_pixel(int64_t height, int64_t width);

// The pixels of each side×side cell of an H×W map (edge cells cut to the map), cells in raster
// order: the sources of the keys functional::pool_cells makes.
std::vector<std::vector<int64_t>> cell_pixels(int64_t height, int64_t width, int64_t side);

namespace functional {

// out_i = Σ_p softmax_p(scale·q_i·k_{index[i,p]}) v_{index[i,p]} over the valid slots; a query
// that reads no key gets 0. q: [B, h, N, d]; k: [B, h, M, d]; v: [B, h, M, dv] → [B, h, N, dv],
// `chunk` queries at a time: at most chunk·P scores per head exist at once.
at::Tensor patterned_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const Pattern& pattern, double scale, int64_t chunk = 1024);

// out_i = Σ_p weights[g, i, p] v_{index[i,p]} over the valid slots: fixed weights, no scores.
// weights: [G, N, P].
at::Tensor patterned_mix(const at::Tensor& v, const Pattern& pattern, const at::Tensor& weights,
                         int64_t chunk = 1024);

// patterned_attention on a tiled pattern (one group: all heads read the same keys),
// `chunk` tiles at a time.
at::Tensor tiled_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TiledPattern& tiles,
                           double scale, int64_t chunk = 64);
// Its multiply-adds: every tile's Q×U scores and weighted sum, padding included.
int64_t tiled_macs(const TiledPattern& tiles, int64_t b, int64_t heads, int64_t d);

// Multiply-adds of patterned_attention for batch b with h heads of width d (dv = d): scores and
// weighted sum over every slot, valid or not, as they are computed.
int64_t patterned_macs(const Pattern& pattern, int64_t b, int64_t heads, int64_t d);

// The pattern as a dense mask [G, N, keys]: what the tests compare with; the engine never
// builds it.
at::Tensor dense_mask(const Pattern& pattern, int64_t keys);

// Dense masked attention with `mask` [G, N, M] (the tests' reference); a row with no key gives 0.
at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask, double scale);

// The mean of each cell×cell square of an H×W raster map of tokens (edge cells cut to the map):
// [B, h, H·W, d] → [B, h, ⌈H/cell⌉·⌈W/cell⌉, d], cells in raster order.
at::Tensor pool_cells(const at::Tensor& tokens, int64_t height, int64_t width, int64_t cell);

// The mean of the tokens of each region: [B, h, N, d] → [B, h, regions, d].
at::Tensor region_means(const at::Tensor& tokens, const Regions& regions);

}  // namespace functional

// The host of the patterned blocks: a token host whose core is the pattern engine. A block
// declares its pattern for a map (raster order, built once per size) and where its extra keys
// come from; the engine and the tests read the same declaration. The patterns are 2-D, so the
// core runs in raster order whatever order the host laid the tokens out in.
class PatternedBlockImpl : public TokenHostImpl {
 public:
  // The pattern on an H×W map, in raster order.
  virtual Pattern build_pattern(int64_t height, int64_t width) const = 0;
  // The pixels each extra key is computed from, in the order the block appends them (a pooled
  // cell: its pixels; a summary of the whole map: all; a learned memory slot: none).
  virtual std::vector<std::vector<int64_t>> extra_key_sources(int64_t /*height*/, int64_t /*width*/) const {
    return {};
  }
  // The pixels whose input can reach output pixel `query` of an H×W map: what it reads, each key
  // expanded to the pixels it is made from, and itself (the residual). Blocks whose queries also
  // read state updated from the whole map (a relay, global tokens) override it.
  virtual std::vector<int64_t> declared_support(int64_t height, int64_t width, int64_t query) const;

  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid& grid) final;
  // The core on q, k, v in raster order ([B, h, H·W, d]; undefined where inputs() does not read
  // them); `grid` is in raster order too (its qk_input and value_input with it).
  virtual at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const TokenGrid& grid) = 0;

  // The tiles the engine computes group g's queries in (tile_pattern): by default 4×4 squares
  // of pixels, which share most of a local pattern's keys.
  virtual at::Tensor tile_of(int64_t height, int64_t width, int64_t /*group*/) const {
    return rectangle_tiles(height, width, 4, 4);
  }
  // The block's pattern tiled, one TiledPattern per group.
  std::vector<TiledPattern> tiled(int64_t height, int64_t width) const;

  // A patterned block's cost depends on the map's shape: core_macs(b, n) is that of a 1×n map.
  int64_t core_macs(int64_t b, int64_t n) const final { return core_macs_on(b, 1, n); }
  // By default the engine's products on the block's tiled pattern.
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;

 protected:
  // The pattern for an H×W map on `device`, built once per size.
  const Pattern& pattern_for(int64_t height, int64_t width, c10::Device device);
  // Attention on the block's pattern (tiled, built once per size), keys and values extended by
  // `extra_k`, `extra_v` ([B, h, E, d]) when it has extra keys. With one group per head, each
  // head is computed on its own group's tiles.
  at::Tensor attend_pattern(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t height,
                            int64_t width, const at::Tensor& extra_k = {}, const at::Tensor& extra_v = {});
  // The same on tiles given (a pattern drawn for this pass only: bigbird's random blocks in training).
  static at::Tensor attend_tiles(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const std::vector<TiledPattern>& tiles);

 private:
  int64_t cached_height_ = -1, cached_width_ = -1;
  c10::Device cached_device_{c10::kCPU};
  Pattern cached_;
  int64_t tiled_height_ = -1, tiled_width_ = -1;
  c10::Device tiled_device_{c10::kCPU};
  std::vector<TiledPattern> cached_tiles_;
};

}  // namespace attnseg
