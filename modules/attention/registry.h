// The one table of attention blocks. It feeds `attnseg list`, the model builder, the
// benchmark and the parameterised block tests; there is no static self-registration (the
// linker drops it from static libraries).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "attention/block.h"
#include "config/config.h"

namespace attnseg {

struct BlockCaps {
  bool needs_fixed_tokens = false;    // trained token count must be kept at inference
  bool needs_divisible_sizes = false; // H, W must be multiples of some factor
  bool has_aux_loss = false;
  bool has_state = false;             // keeps buffers that change while training
};

struct BlockSpec {
  std::string name;
  std::string family;      // "baseline", "vision" or "sequence"
  std::string paper;       // arXiv id
  std::string complexity;  // e.g. "O(N(H+W)C)"
  BlockCaps caps;
  // Builds the block for `channels` input channels from its options node; every option read
  // is accepted, any other key is rejected afterwards.
  std::function<AttentionBlock(int64_t channels, const ConfigNode& options)> build;
};

const std::vector<BlockSpec>& block_registry();
std::vector<std::string> block_names();
// Throws attnseg::Error listing the accepted names when `name` is unknown; `where` names the
// config key that held it.
const BlockSpec& find_block(const std::string& name, const std::string& where = "block name");
// Builds from the `model.attention` node: `type` names the block, and each block's options
// sit under its own name, so one line (`type: ema`) switches blocks:
//   attention: {type: ccnet, ccnet: {recurrence: 2}, nonlocal: {reduction: 2}}
// Options of blocks other than the active one are validated too; unknown names are errors.
AttentionBlock build_block(const ConfigNode& node, int64_t channels);
// A block with its default options (no config), as `attnseg list` and the tests use.
AttentionBlock build_block(const std::string& name, int64_t channels);

int64_t count_parameters(const torch::nn::Module& module);

}  // namespace attnseg
