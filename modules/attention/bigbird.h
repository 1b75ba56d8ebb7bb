// Big Bird: Transformers for Longer Sequences (Zaheer et al., arXiv:2007.14062), block-sparse as
// google-research/bigbird's and Hugging Face's BigBirdBlockSparseAttention (ITC: global tokens
// are tokens of the input), on the map: the map is cut into block×block squares, and the
// pixels of a block attend to the pixels of three kinds of blocks: the 3×3 blocks around it (the
// sliding window, in 2-D), the global blocks, and `random_blocks` other blocks drawn at random.
// The global blocks attend to every pixel and are attended by every pixel. As the references do,
// the global blocks are the first and last (global_blocks = 2; more are spread evenly over the
// blocks in raster order), and the random blocks avoid the window's and the global blocks.
// The random blocks are drawn anew at every training forward (from LibTorch's generator, so a
// seed fixes them) and fixed per map size in evaluation, so that evaluation is deterministic.
//
// Cost: N·(9 + g + r)·block² scores plus the global rows, never N×N.
#pragma once

#include <cstdint>
#include <vector>

#include "attention/pattern.h"

namespace attnseg {

struct BigBirdOptions {
  explicit BigBirdOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, block) = 4;          // side of a square block in pixels
  TORCH_ARG(int64_t, global_blocks) = 2;  // the first and the last block
  TORCH_ARG(int64_t, random_blocks) = 3;  // Hugging Face's num_random_blocks

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("block", block_);
    field("global_blocks", global_blocks_);
    field("random_blocks", random_blocks_);
  }
  void check() const;
};

// The block structure on an H×W map: what each query block reads, by kind.
struct BigBirdLayout {
  int64_t rows = 0, cols = 0;                       // blocks per column and per row
  std::vector<int64_t> global;                      // global block ids, ascending
  std::vector<std::vector<int64_t>> window, random;  // per block: its window's and its random blocks
  std::vector<std::vector<int64_t>> pixels;         // per block, ascending
  int64_t count() const { return rows * cols; }
};

class BigBirdImpl : public PatternedBlockImpl {
 public:
  explicit BigBirdImpl(const BigBirdOptions& options);
  void reset();

  // `seed` draws the random blocks (evaluation uses one fixed per map size).
  BigBirdLayout layout(int64_t height, int64_t width, uint64_t seed) const;
  BigBirdLayout layout(int64_t height, int64_t width) const;
  Pattern build_pattern(int64_t height, int64_t width) const override;
  std::vector<int64_t> declared_support(int64_t height, int64_t width, int64_t query) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;
  // A block's pixels read the same keys: the blocks are the tiles.
  at::Tensor tile_of(int64_t height, int64_t width, int64_t) const override {
    return rectangle_tiles(height, width, options.block(), options.block());
  }

  BigBirdOptions options;

 private:
  Pattern pattern_of(const BigBirdLayout& layout, int64_t n) const;
  // The global blocks among `blocks` (no random draw needed) and their pixels on an H×W map.
  std::vector<int64_t> global_blocks(int64_t blocks) const;
  std::vector<int64_t> global_pixels(int64_t height, int64_t width) const;
};
TORCH_MODULE(BigBird);

}  // namespace attnseg
