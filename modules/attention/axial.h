// Axial Attention in Multidimensional Transformers (Ho et al., arXiv:1912.12180), as
// lucidrains/axial-attention's AxialAttention with sum_axial_out=False: multi-head
// self-attention along the height axis (each column alone), then along the width axis (each
// row alone), each pass added residually as in its AxialImageTransformer, after adding
// learned per-axis positional embeddings (AxialPositionalEmbedding). The embeddings are
// learned at `embedding_size` and linearly interpolated along each axis to the input's size,
// so the block runs at any resolution (the reference fixes the shape).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <optional>

#include "attention/block.h"

namespace attnseg {

namespace functional {
// Per sequence s and head h: out[s, i] = Σ_j softmax_j(scale·q[s,i]·k[s,j]) v[s, j], scale = 1/√e
// unless given (1 when the queries come pre-scaled), e = D/heads. q, k, v: [S, T, D] → [S, T, D].
at::Tensor multihead_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                               std::optional<double> scale = std::nullopt);
}  // namespace functional

struct AxialOptions {
  explicit AxialOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, heads) = 8;
  TORCH_ARG(std::vector<int64_t>, embedding_size) = std::vector<int64_t>{32, 32};  // height, width
  // Standard deviation of the embeddings' normal initialisation: 1 as the reference (randn),
  // which makes their sum twice the RMS of the default model's features (README, "The blocks
  // that do not learn the rule").
  TORCH_ARG(double, embedding_std) = 1.0;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("heads", heads_);
    field("embedding_size", embedding_size_);
    field("embedding_std", embedding_std_);
  }
  void check() const;
};

class AxialImpl : public AttentionBlockImpl {
 public:
  explicit AxialImpl(const AxialOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;
  // Attention along one axis (2: height, each column alone; 3: width, each row alone),
  // without the residual.
  torch::Tensor axis_pass(const torch::Tensor& x, int64_t axis);
  // The positional embeddings interpolated to h × w: [1, C, h, w].
  torch::Tensor positions(int64_t h, int64_t w) const;

  AxialOptions options;
  torch::Tensor height_embedding, width_embedding;  // [1, C, H0, 1], [1, C, 1, W0]

 private:
  std::array<torch::nn::Linear, 2> to_q_{nullptr, nullptr}, to_kv_{nullptr, nullptr}, to_out_{nullptr, nullptr};
};
TORCH_MODULE(Axial);

}  // namespace attnseg
