#include <cstdio>

#include "attention/registry.h"
#include "commands.h"

namespace attnseg::app {

void setup_list(CLI::App& app, ListOptions& options) {
  app.add_option("--channels", options.channels, "channel count at which parameters are counted")
      ->check(CLI::PositiveNumber);
}

int run_list(const ListOptions& options) {
  std::printf("%-12s %-9s %-11s %-14s %12s\n", "name", "family", "paper", "complexity",
              ("params@C=" + std::to_string(options.channels)).c_str());
  for (const auto& spec : block_registry()) {
    const AttentionBlock block = build_block(spec.name, options.channels);
    std::printf("%-12s %-9s %-11s %-14s %12lld\n", spec.name.c_str(), spec.family.c_str(),
                spec.paper.c_str(), spec.complexity.c_str(),
                static_cast<long long>(count_parameters(*block)));
  }
  return 0;
}

}  // namespace attnseg::app
