// The models the demo switches between, each with its own checkpoint.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "engine/experiment.h"

namespace attnseg {

struct DemoBlock {
  std::string name, checkpoint;
  Segmentor model{nullptr};
};

// The experiment of CONFIG and the blocks the demo switches between: CONFIG's own block
// with `checkpoint`, then each (name, checkpoint) of `more`, built from CONFIG with
// model.attention.type=name; all on the runtime's device, in eval mode. Each checkpoint must
// belong to its model, and a block that cannot run on the runtime is refused.
struct DemoModels {
  Experiment experiment;
  Runtime runtime;
  std::vector<DemoBlock> blocks;
};
DemoModels load_demo_models(const std::string& config, const std::string& checkpoint,
                            const std::vector<std::pair<std::string, std::string>>& more, const Runtime& runtime);

}  // namespace attnseg
