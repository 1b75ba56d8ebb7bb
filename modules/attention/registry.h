// The one table of attention blocks. It feeds `attnseg list`, the model builder, the
// benchmark and the parameterised block tests; there is no static self-registration (the
// linker drops it from static libraries). A row is generated from the block's Options struct
// (attention/options.h), so adding a block is its file, one row and one config.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "attention/block.h"
#include "config/config.h"
#include "core/device.h"

namespace attnseg {

// What a block can and cannot do. The model builder, `eval`, `bench` and the demo read these
// and refuse or adapt before the first forward, never at it.
struct BlockCaps {
  bool needs_fixed_tokens = false;     // trained token count must be kept at inference
  bool needs_divisible_sizes = false;  // H, W must be multiples of some factor
  bool has_aux_loss = false;
  bool has_state = false;              // keeps buffers that change while training
  bool cuda = true;                    // runs on CUDA devices (every block runs on the CPU)
  bool bf16 = true, fp16 = true;       // runs under autocast to that type
};

// Builds one block with the options it was configured with.
using BlockFactory = std::function<AttentionBlock()>;

struct BlockSpec {
  std::string name;
  std::string family;      // "baseline", "vision" or "sequence"
  std::string paper;       // arXiv id
  std::string complexity;  // e.g. "O(N(H+W)C)"
  BlockCaps caps;
  // Reads and checks the block's options under `options` for a block on `channels` channels
  // (every key read is accepted, any other rejected; values checked); builds nothing. With
  // `paper_start` the block starts as its reference code starts it (some as the identity, a
  // zero gamma or a zero-initialised last layer), else never as the identity (BlockStart).
  std::function<BlockFactory(int64_t channels, const ConfigNode& options, bool paper_start)> configure;
  // Every option with its default, "name=value" separated by spaces.
  std::function<std::string(int64_t channels)> defaults;
};

const std::vector<BlockSpec>& block_registry();
std::vector<std::string> block_names();
// Throws attnseg::Error listing the accepted names when `name` is unknown; `where` names the
// config key that held it.
const BlockSpec& find_block(const std::string& name, const std::string& where = "block name");

// How every block's residual branch starts: one rule for all blocks, set under
// `model.attention` (README, "The start rule"). `gate` (the default): no block starts as the
// identity, and the head scales the branch by a learned scalar, y = x + gate·(f(x) − x), that
// starts at `gate_init`. `paper`: each block as its reference code starts it, no gate (gate_init,
// like the options of inactive blocks, is read and checked but unused).
struct BlockStart {
  bool paper = false;
  double gate_init = 1.0;
};
inline constexpr double kDefaultGateInit = 1.0;

// The block a `model.attention` node configures: `type` names it, and each block's options
// sit under its own name, so one line (`type: ema`) switches blocks:
//   attention: {type: ccnet, start: gate, gate_init: 1.0, ccnet: {recurrence: 2}, nonlocal: {reduction: 2}}
// Options of blocks other than the active one are read and checked too (unknown names and
// keys are errors), without building anything, so they cannot change the model's weights.
// The keys of a `model.attention` node that are settings of the rule, not a block's options:
// type, start, gate_init. Every other key names a block.
bool is_attention_setting(const std::string& key);

struct ConfiguredBlock {
  std::string name;
  BlockFactory build;
  BlockStart start;
};
ConfiguredBlock configure_block(const ConfigNode& node, int64_t channels);
// A block with its default options (no config) under the default start rule (never the
// identity; the gate is the head's), as `attnseg list` and the tests use.
AttentionBlock build_block(const std::string& name, int64_t channels);

// Why `spec` cannot run under `runtime` ("" when it can): one line naming the block, the
// device and the precision.
std::string runtime_refusal(const BlockSpec& spec, const Runtime& runtime);

int64_t count_parameters(const torch::nn::Module& module);

}  // namespace attnseg
