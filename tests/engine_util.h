// Helpers for tests that train, evaluate or build models from a config, the way the
// commands do: the config read, its runtime started, then the engine called.
#pragma once

#include <filesystem>

#include "config/config.h"
#include "core/device.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"
#include "engine/trainer.h"

namespace attnseg::test {

inline Segmentor model_of(const Config& config) { return build_model(read_experiment(config)); }

inline TrainResult train_config(const Config& config, const std::filesystem::path& work_dir, bool resume) {
  const Experiment x = read_experiment(config);
  return train(x, config.dump(), start_runtime(x.runtime), work_dir, resume);
}

inline EvalResult evaluate_config(const Config& config, const std::filesystem::path& checkpoint) {
  const Experiment x = read_experiment(config);
  return evaluate(x, start_runtime(x.runtime), checkpoint);
}

}  // namespace attnseg::test
