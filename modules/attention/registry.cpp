#include "attention/registry.h"

#include <cctype>
#include <cmath>
#include <set>
#include <type_traits>
#include <utility>

#include "attention/autonl.h"
#include "attention/sparse_transformer.h"
#include "attention/longformer.h"
#include "attention/bigbird.h"
#include "attention/etc.h"
#include "attention/star.h"
#include "attention/bp_transformer.h"
#include "attention/diet.h"
#include "attention/multiscale.h"
#include "attention/jukebox.h"
#include "attention/gmat.h"
#include "attention/handcrafted.h"
#include "attention/axial.h"
#include "attention/cbam.h"
#include "attention/ccnet.h"
#include "attention/compressive.h"
#include "attention/clustered.h"
#include "attention/efficient.h"
#include "attention/ema.h"
#include "attention/fast_l2.h"
#include "attention/gcnet.h"
#include "attention/isa.h"
#include "attention/linear.h"
#include "attention/linformer.h"
#include "attention/routing.h"
#include "attention/sinkhorn.h"
#include "attention/memory_compressed.h"
#include "attention/none.h"
#include "attention/nonlocal.h"
#include "attention/options.h"
#include "attention/performer.h"
#include "attention/permutohedral.h"
#include "attention/sac.h"
#include "attention/product_key.h"
#include "attention/reformer.h"
#include "attention/scram.h"
#include "attention/synthesizer.h"
#include "core/error.h"

namespace attnseg {
namespace {

// Options with a `zero_init` switch: blocks whose reference code starts them as the identity.
template <typename Options, typename = void>
struct HasIdentityStart : std::false_type {};
template <typename Options>
struct HasIdentityStart<Options, std::void_t<decltype(std::declval<Options&>().zero_init(true))>>
    : std::true_type {};

// A block with options: its Options struct's fields are the config keys under its name; the
// start rule, not a per-block key, decides whether it starts as the identity.
template <typename Impl, typename Options>
BlockSpec row(std::string name, std::string family, std::string paper, std::string complexity,
              BlockCaps caps = {}) {
  BlockSpec spec{std::move(name), std::move(family), std::move(paper), std::move(complexity), caps, {}, {}};
  spec.configure = [](int64_t channels, const ConfigNode& node, bool paper_start) -> BlockFactory {
    Options options = read_options<Options>(channels, node);
    if constexpr (HasIdentityStart<Options>::value) options.zero_init(paper_start);
    return [options] { return AttentionBlock(std::make_shared<Impl>(options)); };
  };
  spec.defaults = [](int64_t channels) { return option_defaults<Options>(channels); };
  return spec;
}

constexpr BlockCaps kHasState{false, false, false, /*has_state=*/true};
// scram's search and permutohedral's lattice compute in float under any autocast (their CPU
// kernels take float and double; their tensor forms run on GPUs). Checked against fp32 in bf16
// on the CPU; fp16 only where a GPU has run them, which none has yet.
constexpr BlockCaps kNoFp16{false, false, false, false, /*cuda=*/true, /*bf16=*/true, /*fp16=*/false};
// The sequence blocks that make discrete choices on the queries and keys (reformer's buckets,
// clustered's clusters, routing's windows, sinkhorn's pairing, sac's edges, product_key's top-k)
// have the host project those in float under any autocast (TokenHostImpl::float_queries_keys):
// before it did, rounding them to bf16 alone moved tokens and put the harness's bf16 gradients
// 1.7-9% off fp32. Checked in bf16 on the CPU; fp16 not yet (no GPU has run them).
constexpr BlockCaps kFloatChoices{false, false, false, false, /*cuda=*/true, /*bf16=*/true, /*fp16=*/false};
// routing also has its centroids (state) and its commitment loss; product_key its query
// batch-norm's running statistics.
constexpr BlockCaps kRoutingCaps{false, false, /*has_aux_loss=*/true, /*has_state=*/true,
                                 /*cuda=*/true, /*bf16=*/true, /*fp16=*/false};
constexpr BlockCaps kProductKeyCaps{false, false, false, /*has_state=*/true, /*cuda=*/true, /*bf16=*/true,
                                    /*fp16=*/false};
// compressive's attention-reconstruction loss trains its compression network.
constexpr BlockCaps kOwnLoss{false, false, /*has_aux_loss=*/true};

std::vector<BlockSpec> make_registry() {
  BlockSpec none{"none", "baseline", "-", "0", {}, {}, {}};
  none.configure = [](int64_t, const ConfigNode& node, bool) -> BlockFactory {
    node.finish();
    return [] { return AttentionBlock(std::make_shared<IdentityBlockImpl>()); };
  };
  none.defaults = [](int64_t) { return std::string(); };
  std::vector<BlockSpec> specs{
      none,
      row<NonLocalImpl, NonLocalOptions>("nonlocal", "vision", "1711.07971", "O(N^2 C)"),
      row<CrissCrossImpl, CrissCrossOptions>("ccnet", "vision", "1811.11721", "O(N(H+W)C)"),
      row<EfficientAttentionImpl, EfficientAttentionOptions>("efficient", "vision", "1812.01243", "O(N C^2)"),
      row<CbamImpl, CbamOptions>("cbam", "vision", "1807.06521", "O(N C)"),
      row<GlobalContextImpl, GlobalContextOptions>("gcnet", "vision", "1904.11492", "O(N C)"),
      row<FastL2Impl, FastL2Options>("fast_l2", "vision", "2007.03815", "O(N C^2)"),
      row<EmaImpl, EmaOptions>("ema", "vision", "1907.13426", "O(N K C T)", kHasState),
      row<AxialImpl, AxialOptions>("axial", "vision", "1912.12180", "O(N(H+W)C)"),
      row<IsaImpl, IsaOptions>("isa", "vision", "1907.12273", "O(N(sqrt N)C)"),
      row<LightNonLocalImpl, LightNonLocalOptions>("autonl", "vision", "2004.01961", "O(N C^2 r)"),
      row<ScramImpl, ScramOptions>("scram", "vision", "1905.10308", "O(N k C iters)", kNoFp16),
      row<PermutohedralImpl, PermutohedralOptions>("permutohedral", "vision", "1907.00641", "O(N d^2 C)",
                                                   kNoFp16),
      row<LinearAttentionImpl, LinearAttentionOptions>("linear", "sequence", "2006.16236", "O(N C^2)"),
      row<PerformerImpl, PerformerOptions>("performer", "sequence", "2006.03555", "O(N m C)", kHasState),
      row<LinformerImpl, LinformerOptions>("linformer", "sequence", "2006.04768", "O(N k C)"),
      row<MemoryCompressedImpl, MemoryCompressedOptions>("memory_compressed", "sequence", "1801.10198", "O(N^2 C/s)"),
      row<SynthesizerImpl, SynthesizerOptions>("synthesizer", "sequence", "2005.00743", "O(N^2 C)"),
      row<ReformerImpl, ReformerOptions>("reformer", "sequence", "2001.04451", "O(N log N C)",
                                         kFloatChoices),
      row<RoutingImpl, RoutingOptions>("routing", "sequence", "2003.05997", "O(N w C)", kRoutingCaps),
      row<ClusteredImpl, ClusteredOptions>("clustered", "sequence", "2007.04825", "O(N c C)",
                                           kFloatChoices),
      row<SinkhornImpl, SinkhornOptions>("sinkhorn", "sequence", "2002.11296", "O(N b C)", kFloatChoices),
      row<ProductKeyImpl, ProductKeyOptions>("product_key", "sequence", "1907.05242", "O(N(sqrt M + k^2)C)",
                                             kProductKeyCaps),
      row<CompressiveImpl, CompressiveOptions>("compressive", "sequence", "1911.05507", "O(N(S+M)C)", kOwnLoss),
      row<SacImpl, SacOptions>("sac", "sequence", "2003.09833", "O(N k C)", kFloatChoices),
      // The patterned sparse blocks (pattern.h): the pattern engine, never the N×N scores.
      row<SparseTransformerImpl, SparseTransformerOptions>("sparse_transformer", "sequence", "1904.10509", "O(N(l+N/l)C)"),
      row<LongformerImpl, LongformerOptions>("longformer", "sequence", "2004.05150", "O(N(w^2+g)C)"),
      row<BigBirdImpl, BigBirdOptions>("bigbird", "sequence", "2007.14062", "O(N(9+g+r)b^2 C)"),
      row<EtcImpl, EtcOptions>("etc", "sequence", "2004.08483", "O(N(w^2+g)C)"),
      row<StarImpl, StarOptions>("star", "sequence", "1902.09113", "O(N r^2 C)"),
      row<BpTransformerImpl, BpTransformerOptions>("bp_transformer", "sequence", "1911.04070", "O(N log N C)"),
      row<DietImpl, DietOptions>("diet", "sequence", "2002.06170", "O(N w^2 C)"),
      row<MultiscaleImpl, MultiscaleOptions>("multiscale", "sequence", "2005.00581", "O(N L w^2 C)"),
      row<JukeboxImpl, JukeboxOptions>("jukebox", "sequence", "2005.00341", "O(N(H+W)C)"),
      row<GmatImpl, GmatOptions>("gmat", "sequence", "2006.03274", "O(N(w^2+M)C)"),
      row<HandcraftedImpl, HandcraftedOptions>("handcrafted", "sequence", "2006.05174", "O(N w^2 C)"),
  };
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

bool is_attention_setting(const std::string& key) { return key == "type" || key == "start" || key == "gate_init"; }

namespace {

// Where a block's own check of its options failed: the option its message names ("ccnet:
// recurrence must be at least 1" names `recurrence`), whose origin may be the command line
// while the block's section comes from a base file; the section when no option is named.
std::string where_options_failed(const ConfigNode& node, const std::string& block, const std::string& message) {
  const ConfigNode options = node.child(block);
  const auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  std::string named;
  for (const std::string& option : options.keys()) {
    for (size_t at = message.find(option); at != std::string::npos; at = message.find(option, at + 1)) {
      const size_t end = at + option.size();
      const bool whole = (at == 0 || !word(message[at - 1])) && (end == message.size() || !word(message[end]));
      if (whole && option.size() > named.size()) named = option;
    }
  }
  return named.empty() ? node.where(block) : options.where(named);
}

}  // namespace

ConfiguredBlock configure_block(const ConfigNode& node, int64_t channels) {
  const std::string type = node.require<std::string>("type");
  const BlockSpec& active = find_block(type, "config key " + node.where("type"));
  ConfiguredBlock result{active.name, {}, {}};
  const std::string start = node.get<std::string>("start", "gate");
  if (start != "gate" && start != "paper") {
    throw Error("config key " + node.where("start") + " must be gate or paper, got '" + start + "'");
  }
  result.start.paper = start == "paper";
  result.start.gate_init = node.get<double>("gate_init", kDefaultGateInit);
  for (const std::string& key : node.keys()) {
    if (is_attention_setting(key)) continue;
    const BlockSpec& spec = find_block(key, "config key " + node.where(key));
    try {
      BlockFactory factory = spec.configure(channels, node.child(key), result.start.paper);
      if (&spec == &active) result.build = std::move(factory);
    } catch (const c10::Error& e) {
      const std::string message = one_line(e.what_without_backtrace());
      throw Error("config key " + where_options_failed(node, key, message) + ": " + message);
    }
  }
  if (!result.build) {
    try {
      result.build = active.configure(channels, node.child(type), result.start.paper);
    } catch (const c10::Error& e) {
      throw Error("config key " + node.where("type") + ": " + one_line(e.what_without_backtrace()));
    }
  }
  return result;
}

AttentionBlock build_block(const std::string& name, int64_t channels) {
  const Config empty = Config::from_string("{}", "defaults");
  return find_block(name).configure(channels, empty.root(), /*paper_start=*/false)();
}

std::string runtime_refusal(const BlockSpec& spec, const Runtime& runtime) {
  const BlockCaps& caps = spec.caps;
  if (runtime.cuda() && !caps.cuda) {
    return "block " + spec.name + " cannot run on " + runtime.device.str() + " (precision " +
           precision_name(runtime.precision) + "): it runs on the CPU only";
  }
  const bool precision_ok = runtime.precision == Precision::fp32 ||
                            (runtime.precision == Precision::bf16 && caps.bf16) ||
                            (runtime.precision == Precision::fp16 && caps.fp16);
  if (!precision_ok) {
    std::string supported = "fp32";
    if (caps.bf16) supported += ", bf16";
    if (caps.fp16) supported += ", fp16";
    return "block " + spec.name + " cannot run in " + precision_name(runtime.precision) + " on " +
           runtime.device.str() + ": it runs in " + supported + " only";
  }
  return "";
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

}  // namespace attnseg
