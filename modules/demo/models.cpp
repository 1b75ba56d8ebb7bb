#include "demo/models.h"

#include "core/error.h"
#include "engine/checkpoint.h"

namespace attnseg {

DemoModels load_demo_models(const std::string& config, const std::string& checkpoint,
                            const std::vector<std::pair<std::string, std::string>>& more, const Runtime& runtime) {
  DemoModels m{read_experiment(Config::load(config)), runtime, {}};
  m.blocks.push_back({m.experiment.model.block.name, checkpoint, build_model(m.experiment, runtime)});
  for (const auto& [name, file] : more) {
    for (const auto& b : m.blocks) {
      if (b.name == name) throw Error("block " + name + " is loaded twice");
    }
    const Experiment x = read_experiment(Config::load(config, {"model.attention.type=" + name}));
    m.blocks.push_back({name, file, build_model(x, runtime)});
  }
  for (auto& b : m.blocks) {
    load_checkpoint(b.checkpoint, b.model);
    b.model->eval();
  }
  return m;
}

}  // namespace attnseg
