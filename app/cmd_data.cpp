#include <cstdio>

#include "commands.h"
#include "config/config.h"
#include "core/error.h"
#include "engine/data_check.h"

namespace attnseg::app {

void setup_data(CLI::App& app, DataOptions& options) {
  app.require_subcommand(1);
  CLI::App* check = app.add_subcommand(
      "check",
      "Walk a config's dataset: counts, sizes, class frequencies and every defective file");
  check->add_option("config", options.config, "experiment config (YAML)")->required();
}

int run_data(const DataOptions& options) {
  const DataCheck check = check_dataset(Config::load(options.config));
  std::fputs(format_data_check(check).c_str(), stdout);
  std::fflush(stdout);
  if (!check.defects.empty()) {
    throw Error("data check: " + std::to_string(check.defects.size()) + " defective sample(s) in " +
                check.root + " (listed above)");
  }
  return 0;
}

}  // namespace attnseg::app
