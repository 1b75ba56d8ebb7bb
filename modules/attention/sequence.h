// The token host of the sequence blocks (../shared/ATTENTION_CATALOG.md, "Sequence blocks"):
// what every mechanism written for 1-D token sequences needs to run on a feature map, written
// once. The map [B, C, H, W] becomes N = H·W tokens in an explicit 2-D order, a pre-norm
// transformer attention layer projects them to multi-head queries, keys and values
// [B, heads, N, dim_head], the block's core attends, and the output projection is added back
// to the map. Positional encodings work at any resolution, so every block trains at one size
// and runs at another (sliding windows, the demo's 640×480). A block only writes its core
// (`attend`) and its options; its residual branch starts under the project's one start rule
// (no sequence block's reference code starts as the identity, so none has a zero_init).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "attention/block.h"

namespace attnseg {

// How the map's pixels are laid out as a sequence. Raster: row by row. Tiles: raster order of
// tile×tile squares, raster inside each, so that consecutive tokens are 2-D neighbours (for
// the blocks whose mechanism is about locality in the sequence: chunks, windows, memories).
enum class TokenOrder { raster, tiles };

// The options every sequence block shares; a block's Options struct holds one and lists its
// fields beside its own, so the config keys are the same for every block.
struct TokenHostOptions {
  explicit TokenHostOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, heads) = 4;
  TORCH_ARG(int64_t, dim_head) = 0;  // 0: channels / heads
  // sinusoidal (2-D, fixed, any size), learned (a grid of map_size, resampled bilinearly to
  // the map it meets) or none
  TORCH_ARG(std::string, positional) = "sinusoidal";
  // The map the block is trained on (the default: the 64×384 synthetic scenes at output
  // stride 8): the size of the learned positions and of any size-dependent parameter
  // (linformer's projections), which are resampled at other sizes.
  TORCH_ARG(std::vector<int64_t>, map_size) = std::vector<int64_t>{8, 48};
  TORCH_ARG(std::string, order) = "raster";  // raster or tiles
  TORCH_ARG(int64_t, tile) = 4;              // tile side for order=tiles

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("heads", heads_);
    field("dim_head", dim_head_);
    field("positional", positional_);
    field("map_size", map_size_);
    field("order", order_);
    field("tile", tile_);
  }
  // `block` names the block in the messages.
  void check(const std::string& block) const;
  int64_t head_width() const { return dim_head_ > 0 ? dim_head_ : channels_ / heads_; }
  int64_t inner() const { return heads_ * head_width(); }
  TokenOrder token_order() const { return order_ == "tiles" ? TokenOrder::tiles : TokenOrder::raster; }
};

// Where the tokens came from: the map's size and the order they were laid out in. A core that
// needs the 2-D position of token t reads it from `pixel_of`. A core whose mechanism needs a
// token count divisible by some length (TokenHostImpl::token_multiple) gets its q, k, v padded
// at the end with `padding` tokens; `key_valid` marks the real ones, and the core must never let
// a real query attend to a padded key (its output at padded queries is dropped).
struct TokenGrid {
  int64_t height = 0, width = 0;
  TokenOrder order = TokenOrder::raster;
  at::Tensor pixel_of;  // [N] long: the raster index (y·W + x) of token t; undefined in raster order
  int64_t padding = 0;  // tokens appended after the H·W real ones
  at::Tensor key_valid;  // [H·W + padding] bool, true at real tokens; undefined when padding is 0
  // The inputs of the host's projections, [B, H·W, C] in the grid's order (not padded): the
  // normalised tokens with the positions (queries', keys') and without (values'), for a core
  // with projections of its own (longformer's global attention).
  at::Tensor qk_input = {}, value_input = {};
  int64_t length() const { return height * width; }
  int64_t padded_length() const { return height * width + padding; }
};

// The grid of a map with `padding` tokens appended (key_valid on `device`).
TokenGrid padded_grid(TokenGrid grid, int64_t padding, c10::Device device);

// pixel_of for a map of height × width laid out in `order` (tile side `tile`): a permutation
// of 0..H·W−1. Edge tiles are cut to the map, so any size works.
at::Tensor token_permutation(int64_t height, int64_t width, TokenOrder order, int64_t tile);

// P maps learned at one size ([P, h0, w0]: linformer's projections, synthesizer's attention
// rows) for the grid's map: resampled bilinearly when its size differs, then laid out in the
// grid's token order, [P, H·W].
at::Tensor resample_to_grid(const at::Tensor& maps, const TokenGrid& grid);

namespace functional {
// pe[c, y, x]: the first C/2 channels encode y, the rest x, each as sin/cos pairs at
// frequencies 10000^(−2i/(C/2)) (the transformer's 1-D encoding per axis). [C, H, W].
at::Tensor sinusoidal_position_2d(int64_t channels, int64_t height, int64_t width);
}  // namespace functional

// Which of the host's projections a core reads. One it does not read (the keys of reformer's
// shared query-key, of synthesizer and of product_key; product_key's values; the random
// synthesizers' queries) is never built: not computed, trained or saved, and `attend` gets an
// undefined tensor in its place.
struct TokenInputs {
  bool queries = true, keys = true, values = true;
};

class TokenHostImpl : public AttentionBlockImpl {
 public:
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;

  // q, k: [B, heads, N, dim_head], v: [B, heads, N, dim_head] in the grid's order → the
  // attended values, same shape as v.
  virtual at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const TokenGrid& grid) = 0;
  // Multiply-adds of `attend` for batch b on a grid of n tokens (projections excluded; n is the
  // padded length when the block pads).
  virtual int64_t core_macs(int64_t b, int64_t n) const = 0;
  // The same on an H×W map: what macs() reports. By default core_macs of its padded token count;
  // a block whose cost depends on the map's shape, not only on N (the patterned blocks' rows and
  // columns), overrides it.
  virtual int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const;
  // The core needs a token count divisible by this (chunks, blocks, segments): the host pads q,
  // k and v with zero tokens up to the next multiple and marks them in TokenGrid::key_valid.
  virtual int64_t token_multiple() const { return 1; }
  // The projections the core reads; asked by reset_host(), so it may depend on the options.
  virtual TokenInputs inputs() const { return {}; }
  // The core makes discrete choices on the queries and keys (buckets, clusters, windows, top-k):
  // the host projects them in float under any autocast, so that rounding to bf16 or fp16 cannot
  // move a token to another bucket (the values and the output projection still follow autocast).
  virtual bool float_queries_keys() const { return false; }

  const TokenHostOptions& host_options() const { return host_; }

 protected:
  // Registers the layer's modules for `host` (the block's options.host()); a block's reset()
  // calls it, so options changed before a reset() take effect as LibTorch's modules do.
  void reset_host(const TokenHostOptions& host);

 private:
  at::Tensor positions(int64_t height, int64_t width, c10::Device device);  // [C, H, W] or undefined

  TokenHostOptions host_{1};
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear to_q_{nullptr}, to_k_{nullptr}, to_v_{nullptr}, to_out_{nullptr};
  at::Tensor learned_positions_;  // [C, h0, w0] for positional=learned
  at::Tensor sinusoidal_;         // the fixed encoding of the last map size met, on its device
};

}  // namespace attnseg
