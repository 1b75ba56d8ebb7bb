// The interface every attention block implements: a module [B, C, H, W] → [B, C, H, W] that
// also reports its own multiply-add count, attention products included (mmsegmentation's
// FLOPs counter skips matmul/bmm and so undercounts attention heads).
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <vector>

namespace attnseg {

class AttentionBlockImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // Multiply-adds of one forward pass on an input of shape {B, C, H, W}.
  virtual int64_t macs(const std::vector<int64_t>& shape) const = 0;
  // The block's own loss from its last forward pass in training mode (routing's commitment
  // loss, compressive's attention reconstruction), a scalar already weighted by the block's
  // options, which the segmentor adds to the total as it is; undefined for blocks that have none
  // (BlockCaps::has_aux_loss says which do) and after an evaluation-mode forward.
  virtual torch::Tensor aux_loss() const { return {}; }

  // State that can carry from one video frame to the next (compressive's memories): with
  // temporal mode on, each forward continues from the state the last one left, until
  // reset_temporal() forgets it (the demo's `--temporal` resets it on a scene cut or a block
  // switch). Off by default: training and evaluation see frames that are not a sequence.
  virtual bool temporal_capable() const { return false; }
  virtual void set_temporal(bool /*on*/) {}
  virtual void reset_temporal() {}
};

using AttentionBlock = std::shared_ptr<AttentionBlockImpl>;

}  // namespace attnseg
