// What the subcommands share: the start of every command that computes, and the parsing of
// command-line values (whose messages name the flag).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"

namespace attnseg::app {

// What `attnseg --version` prints: the release and what this binary was built against
// ("attnseg 0.1.0 (LibTorch 1.13.0, OpenCV 4.6.0, CPU only, c10d: Gloo)").
std::string version_line();

// Resolves the runtime (a device that is not there or a precision it cannot run ends in one
// line and a non-zero exit, before anything is written), then logs the command's first line:
// "<command>: device cpu, precision fp32, 2 threads, LibTorch 1.13.0".
Runtime begin_command(const std::string& command, const RuntimeSettings& settings);

// The model a command loads, as CONFIG and --checkpoint name it: CONFIG is a config file (then
// --checkpoint is required) or a run's work directory, which stands for its config.yaml and,
// without --checkpoint, its latest checkpoint. Errors name the flag or the missing file.
struct TrainedModel {
  std::string config, checkpoint;
  bool latest_of_run = false;  // the checkpoint was chosen as the run directory's latest
};
TrainedModel resolve_trained_model(const std::string& config, const std::string& checkpoint);
// Logs the checkpoint a run directory stood for (nothing when --checkpoint named it).
void log_latest_of_run(const TrainedModel& trained);

// Readies the file a command writes its report to (`flag` names the option), before the work
// that fills it: its directory is created, and a directory at `path` or an unwritable folder
// ends in one line naming the flag and the path. Nothing to do when `path` is empty.
void prepare_output_file(const std::string& path, const std::string& flag);

// "32x64,64x128" → {{32, 64}, {64, 128}}; throws attnseg::Error naming --sizes and the bad item.
std::vector<std::array<int64_t, 2>> parse_sizes(const std::string& text);
// "all" → every registered block; otherwise a comma-separated list of known names, each once
// (--blocks).
std::vector<std::string> parse_block_list(const std::string& text);
// The demo's "name=checkpoint,..." (--blocks): known block names, each once, none equal to
// `own` (the config's block, loaded with --checkpoint).
std::vector<std::pair<std::string, std::string>> parse_demo_blocks(const std::string& text, const std::string& own);

}  // namespace attnseg::app
