// Jukebox's factorised attention (Dhariwal et al., arXiv:2005.00341), as openai/jukebox's
// FactoredAttention: the sequence is laid out as a 2-D grid of blocks and the attention is
// split into row attention (a token reads its own row), column attention (its column) and
// previous-row attention (the whole row above it). On a feature map the grid is the map itself.
// Jukebox gives each layer one of the three; one block gives them to its heads in turn (head
// i: row, column, previous row for i mod 3), so heads must be at least 3. A pixel of the first
// row has no previous row: that head's output there is 0, as the reference's zero-padded
// previous block gives.
//
// Cost: N·(W + H + W)/3 per head: O(N√N) on a square map, never N×N.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

struct JukeboxOptions {
  explicit JukeboxOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
  }
  void check() const;
};

enum class JukeboxMask { row, column, previous_row };

class JukeboxImpl : public PatternedBlockImpl {
 public:
  explicit JukeboxImpl(const JukeboxOptions& options);
  void reset();

  static JukeboxMask mask_of_head(int64_t head) { return static_cast<JukeboxMask>(head % 3); }
  static Pattern mask_pattern(int64_t height, int64_t width, JukeboxMask mask);
  Pattern build_pattern(int64_t height, int64_t width) const override;
  // Runs of 16 pixels along the row (row, previous row) or the column (column): they share
  // every key.
  at::Tensor tile_of(int64_t height, int64_t width, int64_t group) const override {
    return mask_of_head(group) == JukeboxMask::column ? rectangle_tiles(height, width, 16, 1)
                                                       : rectangle_tiles(height, width, 1, 16);
  }
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;

  JukeboxOptions options;
};
TORCH_MODULE(Jukebox);

}  // namespace attnseg
