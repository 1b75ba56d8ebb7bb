#include <algorithm>
#include <cstdio>

#include "attention/registry.h"
#include "commands.h"

namespace attnseg::app {

void setup_list(CLI::App& app, ListOptions& options) {
  app.add_option("--channels", options.channels, "channel count at which parameters are counted")
      ->check(positive());
}

int run_list(const ListOptions& options) {
  // Columns as wide as their longest entry, so that every row lines up.
  int name_width = 4, complexity_width = 10;
  for (const auto& spec : block_registry()) {
    name_width = std::max(name_width, static_cast<int>(spec.name.size()));
    complexity_width = std::max(complexity_width, static_cast<int>(spec.complexity.size()));
  }
  std::printf("%-*s %-9s %-11s %-*s %12s\n", name_width, "name", "family", "paper", complexity_width,
              "complexity", ("params@C=" + std::to_string(options.channels)).c_str());
  for (const auto& spec : block_registry()) {
    const AttentionBlock block = build_block(spec.name, options.channels);
    std::printf("%-*s %-9s %-11s %-*s %12lld\n", name_width, spec.name.c_str(), spec.family.c_str(),
                spec.paper.c_str(), complexity_width, spec.complexity.c_str(),
                static_cast<long long>(count_parameters(*block)));
  }
  return 0;
}

}  // namespace attnseg::app
