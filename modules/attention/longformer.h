// Longformer: The Long-Document Transformer (Beltagy, Peters and Cohan, arXiv:2004.05150), as
// allenai/longformer's LongformerSelfAttention, on the map: each token attends to the square
// window×window of pixels around it (the sliding window, in 2-D) and to the global tokens; the
// global tokens attend to every token and are attended by every token. As in the reference, the
// global rows have their own query, key and value projections (query_global, key_global,
// value_global), and the other tokens read the global tokens through the window's projections.
// Longformer's global tokens are chosen by the task (a [CLS]); on a map they are the centre
// pixels of a global_grid[0]×global_grid[1] partition of it, so their number stays fixed at any
// resolution. A global pixel inside a token's window is read once.
//
// Cost: N·(window² + g) scores and g·N for the global rows, never N×N.
#pragma once

#include <torch/nn/modules/linear.h>

#include "attention/pattern.h"

namespace attnseg {

struct LongformerOptions {
  explicit LongformerOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, window) = 7;  // side of the square window, odd
  TORCH_ARG(std::vector<int64_t>, global_grid) = std::vector<int64_t>{2, 4};  // [0, 0]: no global tokens

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("window", window_);
    field("global_grid", global_grid_);
  }
  void check() const;
};

class LongformerImpl : public PatternedBlockImpl {
 public:
  explicit LongformerImpl(const LongformerOptions& options);
  void reset();

  Pattern build_pattern(int64_t height, int64_t width) const override;
  std::vector<int64_t> declared_support(int64_t height, int64_t width, int64_t query) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;
  // The global tokens' pixels on an H×W map, ascending.
  std::vector<int64_t> global_pixels(int64_t height, int64_t width) const;

  LongformerOptions options;
  torch::nn::Linear query_global{nullptr}, key_global{nullptr}, value_global{nullptr};
};
TORCH_MODULE(Longformer);

}  // namespace attnseg
