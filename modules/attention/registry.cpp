#include "attention/registry.h"

#include <set>

#include "attention/autonl.h"
#include "attention/axial.h"
#include "attention/ccnet.h"
#include "attention/cbam.h"
#include "attention/efficient.h"
#include "attention/ema.h"
#include "attention/fast_l2.h"
#include "attention/gcnet.h"
#include "attention/isa.h"
#include "attention/nonlocal.h"
#include "attention/none.h"
#include "attention/permutohedral.h"
#include "attention/scram.h"

namespace attnseg {
namespace {

std::vector<BlockSpec> make_registry() {
  std::vector<BlockSpec> specs;
  specs.push_back({"none", "baseline", "-", "0", {}, [](int64_t, const ConfigNode&) {
                     return AttentionBlock(std::make_shared<IdentityBlockImpl>());
                   }});
  specs.push_back({"nonlocal", "vision", "1711.07971", "O(N^2 C)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     NonLocalOptions o(channels);
                     o.reduction(node.get<int64_t>("reduction", o.reduction()));
                     o.zero_init(node.get<bool>("zero_init", o.zero_init()));
                     return AttentionBlock(std::make_shared<NonLocalImpl>(o));
                   }});
  specs.push_back({"ccnet", "vision", "1811.11721", "O(N(H+W)C)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     CrissCrossOptions o(channels);
                     o.recurrence(node.get<int64_t>("recurrence", o.recurrence()));
                     o.reduction(node.get<int64_t>("reduction", o.reduction()));
                     o.gamma_init(node.get<double>("gamma_init", o.gamma_init()));
                     return AttentionBlock(std::make_shared<CrissCrossImpl>(o));
                   }});
  specs.push_back({"efficient", "vision", "1812.01243", "O(N C^2)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     EfficientAttentionOptions o(channels);
                     o.key_channels(node.get<int64_t>("key_channels", o.key_channels()));
                     o.value_channels(node.get<int64_t>("value_channels", o.value_channels()));
                     o.heads(node.get<int64_t>("heads", o.heads()));
                     return AttentionBlock(std::make_shared<EfficientAttentionImpl>(o));
                   }});
  specs.push_back({"cbam", "vision", "1807.06521", "O(N C)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     CbamOptions o(channels);
                     o.reduction(node.get<int64_t>("reduction", o.reduction()));
                     o.kernel_size(node.get<int64_t>("kernel_size", o.kernel_size()));
                     return AttentionBlock(std::make_shared<CbamImpl>(o));
                   }});
  specs.push_back({"gcnet", "vision", "1904.11492", "O(N C)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     GlobalContextOptions o(channels);
                     o.ratio(node.get<double>("ratio", o.ratio()));
                     o.zero_init(node.get<bool>("zero_init", o.zero_init()));
                     return AttentionBlock(std::make_shared<GlobalContextImpl>(o));
                   }});
  specs.push_back({"fast_l2", "vision", "2007.03815", "O(N C^2)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     FastL2Options o(channels);
                     o.reduction(node.get<int64_t>("reduction", o.reduction()));
                     o.zero_init(node.get<bool>("zero_init", o.zero_init()));
                     return AttentionBlock(std::make_shared<FastL2Impl>(o));
                   }});
  specs.push_back({"ema", "vision", "1907.13426", "O(N K C T)", BlockCaps{false, false, false, /*has_state=*/true},
                   [](int64_t channels, const ConfigNode& node) {
                     EmaOptions o(channels);
                     o.bases(node.get<int64_t>("bases", o.bases()));
                     o.iterations(node.get<int64_t>("iterations", o.iterations()));
                     o.momentum(node.get<double>("momentum", o.momentum()));
                     return AttentionBlock(std::make_shared<EmaImpl>(o));
                   }});
  specs.push_back({"axial", "vision", "1912.12180", "O(N(H+W)C)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     AxialOptions o(channels);
                     o.heads(node.get<int64_t>("heads", o.heads()));
                     const auto size = node.get_array<int64_t, 2>("embedding_size", {32, 32});
                     o.embedding_size({size[0], size[1]});
                     return AttentionBlock(std::make_shared<AxialImpl>(o));
                   }});
  specs.push_back({"isa", "vision", "1907.12273", "O(N(sqrt N)C)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     IsaOptions o(channels);
                     o.reduction(node.get<int64_t>("reduction", o.reduction()));
                     const auto f = node.get_array<int64_t, 2>("down_factor", {8, 8});
                     o.down_factor({f[0], f[1]});
                     return AttentionBlock(std::make_shared<IsaImpl>(o));
                   }});
  specs.push_back({"autonl", "vision", "2004.01961", "O(N C^2 r)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     LightNonLocalOptions o(channels);
                     o.ratio(node.get<double>("ratio", o.ratio()));
                     o.stride(node.get<int64_t>("stride", o.stride()));
                     o.zero_init(node.get<bool>("zero_init", o.zero_init()));
                     return AttentionBlock(std::make_shared<LightNonLocalImpl>(o));
                   }});
  specs.push_back({"scram", "vision", "1905.10308", "O(N k C iters)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     ScramOptions o(channels);
                     o.topk(node.get<int64_t>("topk", o.topk()));
                     o.iterations(node.get<int64_t>("iterations", o.iterations()));
                     o.reduction(node.get<int64_t>("reduction", o.reduction()));
                     o.gamma_init(node.get<double>("gamma_init", o.gamma_init()));
                     o.eval_seed(node.get<int64_t>("eval_seed", o.eval_seed()));
                     return AttentionBlock(std::make_shared<ScramImpl>(o));
                   }});
  specs.push_back({"permutohedral", "vision", "1907.00641", "O(N d^2 C)", {},
                   [](int64_t channels, const ConfigNode& node) {
                     PermutohedralOptions o(channels);
                     o.filter_dim(node.get<int64_t>("filter_dim", o.filter_dim()));
                     o.heads(node.get<int64_t>("heads", o.heads()));
                     o.kernel_std(node.get<double>("kernel_std", o.kernel_std()));
                     o.normalize(node.get<bool>("normalize", o.normalize()));
                     o.shared_qk(node.get<bool>("shared_qk", o.shared_qk()));
                     return AttentionBlock(std::make_shared<PermutohedralImpl>(o));
                   }});
  std::set<std::string> seen;
  for (const auto& spec : specs) {
    if (!seen.insert(spec.name).second) throw Error("duplicate block name in registry: " + spec.name);
  }
  return specs;
}

}  // namespace

const std::vector<BlockSpec>& block_registry() {
  static const std::vector<BlockSpec> registry = make_registry();
  return registry;
}

std::vector<std::string> block_names() {
  std::vector<std::string> names;
  for (const auto& spec : block_registry()) names.push_back(spec.name);
  return names;
}

const BlockSpec& find_block(const std::string& name, const std::string& where) {
  for (const auto& spec : block_registry()) {
    if (spec.name == name) return spec;
  }
  std::string accepted;
  for (const auto& n : block_names()) accepted += (accepted.empty() ? "" : ", ") + n;
  throw Error("unknown attention block '" + name + "' in " + where + "; accepted: " + accepted);
}

AttentionBlock build_block(const ConfigNode& node, int64_t channels) {
  const std::string type = node.require<std::string>("type");
  const BlockSpec& active = find_block(type, "config key " + node.where("type"));
  AttentionBlock block;
  for (const std::string& key : node.keys()) {
    if (key == "type") continue;
    const BlockSpec& spec = find_block(key, "config key " + node.where(key));
    const ConfigNode options = node.child(key);
    try {
      AttentionBlock built = spec.build(channels, options);
      if (&spec == &active) block = built;
    } catch (const c10::Error& e) {
      throw Error("config key " + node.where(key) + ": " + e.what_without_backtrace());
    }
    options.finish();
  }
  if (!block) block = active.build(channels, node.child(type));
  return block;
}

AttentionBlock build_block(const std::string& name, int64_t channels) {
  const Config empty = Config::from_string("{}", "defaults");
  return find_block(name).build(channels, empty.root());
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

}  // namespace attnseg
