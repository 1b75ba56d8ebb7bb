#include "common.h"

#include <opencv2/core/version.hpp>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "attention/registry.h"
#include "core/cpu_bf16.h"
#include "core/error.h"
#include "core/runtime.h"
#include "engine/distributed.h"
#include "engine/trainer.h"

namespace attnseg::app {

std::string version_line() {
  std::string c10d;
  if (distributed_available()) c10d += "Gloo";
  if (nccl_available()) c10d += c10d.empty() ? "NCCL" : ", NCCL";
#ifdef ATTNSEG_WITH_CUDA
  const std::string cuda = "with CUDA";
#else
  const std::string cuda = "CPU only";
#endif
  return std::string("attnseg ") + ATTNSEG_VERSION + " (LibTorch " + TORCH_VERSION + ", OpenCV " + CV_VERSION + ", " +
         cuda + ", c10d: " + (c10d.empty() ? "none" : c10d) + ")";
}

Runtime begin_command(const std::string& command, const RuntimeSettings& settings) {
  const Runtime runtime = start_runtime(settings);
  spdlog::info("{}: {}", command, describe_runtime(runtime));
  warn_if_slow_blas();
  warn_if_bf16_sums_in_bf16(runtime);
  return runtime;
}

TrainedModel resolve_trained_model(const std::string& config, const std::string& checkpoint) {
  namespace fs = std::filesystem;
  if (!fs::exists(config)) throw Error(config + " does not exist (give a config file or a run's work directory)");
  if (!fs::is_directory(config)) {
    if (checkpoint.empty()) {
      throw Error("--checkpoint is required with a config file (" + config +
                  "); or give a run's work directory, which stands for its config.yaml and latest checkpoint");
    }
    return {config, checkpoint};
  }
  const fs::path own = fs::path(config) / "config.yaml";
  if (!fs::exists(own)) throw Error(own.string() + " does not exist: " + config + " is not a run's work directory");
  if (!checkpoint.empty()) return {own.string(), checkpoint};
  fs::path latest = latest_checkpoint(config);  // what the run recorded as its last good one
  if (latest.empty()) {
    const auto saved = checkpoints_in(config);
    if (saved.empty()) throw Error(config + " holds no checkpoint (iter_<N>.pt)");
    latest = saved.front().second;
  }
  return {own.string(), latest.string(), true};
}

void log_latest_of_run(const TrainedModel& trained) {
  if (trained.latest_of_run) spdlog::info("checkpoint {} (the run's latest)", trained.checkpoint);
}

void prepare_output_file(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  const fs::path file(path);
  std::error_code ec;
  if (fs::is_directory(file, ec)) throw Error(flag + " " + path + ": a directory is in the way of the file");
  const fs::path folder = file.has_parent_path() ? file.parent_path() : fs::path(".");
  fs::create_directories(folder, ec);
  if (ec) throw Error(flag + " " + path + ": cannot create the directory " + folder.string() + ": " + ec.message());
  if (::access(folder.c_str(), W_OK) != 0) {
    throw Error(flag + " " + path + ": cannot write into " + folder.string() + ": " + std::strerror(errno));
  }
}

std::vector<std::array<int64_t, 2>> parse_sizes(const std::string& text) {
  std::vector<std::array<int64_t, 2>> sizes;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    long long h = 0, w = 0;
    char x = 0, rest = 0;
    if (std::sscanf(item.c_str(), "%lld%c%lld%c", &h, &x, &w, &rest) != 3 || x != 'x' || h <= 0 ||
        w <= 0) {
      throw Error("--sizes: '" + item + "' is not HEIGHTxWIDTH with positive integers (e.g. 32x64)");
    }
    sizes.push_back({h, w});
  }
  if (sizes.empty()) throw Error("--sizes: no size given (e.g. 32x64,64x128)");
  return sizes;
}

std::vector<std::string> parse_block_list(const std::string& text) {
  if (text == "all") return block_names();
  std::vector<std::string> blocks;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (item.empty()) continue;
    const std::string& name = find_block(item, "--blocks").name;
    // Twice would train or time it twice and give it two rows of one leaderboard or table.
    if (std::find(blocks.begin(), blocks.end(), name) != blocks.end()) {
      throw Error("--blocks: " + name + " is named twice");
    }
    blocks.push_back(name);
  }
  if (blocks.empty()) throw Error("--blocks: no block named (give a list such as none,ccnet or 'all')");
  return blocks;
}

std::vector<std::pair<std::string, std::string>> parse_demo_blocks(const std::string& text, const std::string& own) {
  std::vector<std::pair<std::string, std::string>> blocks;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      throw Error("--blocks: '" + item + "' is not name=checkpoint");
    }
    const std::string name = find_block(item.substr(0, eq), "--blocks").name;
    bool twice = name == own;
    for (const auto& b : blocks) twice = twice || b.first == name;
    if (twice) throw Error("--blocks: " + name + " is loaded twice");
    blocks.emplace_back(name, item.substr(eq + 1));
  }
  return blocks;
}

}  // namespace attnseg::app
