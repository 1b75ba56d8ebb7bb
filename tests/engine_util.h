// Helpers for tests that train, evaluate or build models from a config, the way the
// commands do: the config read, its runtime started, then the engine called.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/device.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"
#include "engine/trainer.h"

namespace attnseg::test {

inline Segmentor model_of(const Config& config) { return build_model(read_experiment(config)); }

// Every line of a run's metrics.jsonl, parsed.
inline std::vector<nlohmann::json> metric_lines(const std::filesystem::path& metrics) {
  std::vector<nlohmann::json> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The losses logged, in order (the learning curve's lines carry none).
inline std::vector<double> losses(const std::filesystem::path& metrics) {
  std::vector<double> out;
  for (const auto& j : metric_lines(metrics)) {
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

inline TrainResult train_config(const Config& config, const std::filesystem::path& work_dir, bool resume) {
  const Experiment x = read_experiment(config);
  return train(x, config.dump(), start_runtime(x.runtime), work_dir, resume);
}

inline EvalResult evaluate_config(const Config& config, const std::filesystem::path& checkpoint) {
  const Experiment x = read_experiment(config);
  return evaluate(x, start_runtime(x.runtime), checkpoint);
}

}  // namespace attnseg::test
