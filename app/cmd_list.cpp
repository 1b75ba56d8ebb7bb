#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "attention/registry.h"
#include "commands.h"

namespace attnseg::app {

void setup_list(CLI::App& app, ListOptions& options) {
  app.add_option("--channels", options.channels, "channel count at which parameters are counted")
      ->check(positive());
}

int run_list(const ListOptions& options) {
  // Columns as wide as their longest entry, so that every row lines up.
  struct Row {
    std::string name, family, paper, complexity, params, devices, precisions, options;
  };
  std::vector<Row> rows{{"name", "family", "paper", "complexity", "params@C=" + std::to_string(options.channels),
                         "devices", "precisions", "options (defaults)"}};
  for (const auto& spec : block_registry()) {
    const AttentionBlock block = build_block(spec.name, options.channels);
    std::string precisions = "fp32";
    if (spec.caps.bf16) precisions += ",bf16";
    if (spec.caps.fp16) precisions += ",fp16";
    const std::string defaults = spec.defaults(options.channels);
    rows.push_back({spec.name, spec.family, spec.paper, spec.complexity, std::to_string(count_parameters(*block)),
                    spec.caps.cuda ? "cpu,cuda" : "cpu", precisions, defaults.empty() ? "-" : defaults});
  }
  std::array<size_t, 7> width{};
  for (const auto& r : rows) {
    const std::array<size_t, 7> w{r.name.size(),   r.family.size(),  r.paper.size(),     r.complexity.size(),
                                  r.params.size(), r.devices.size(), r.precisions.size()};
    for (size_t i = 0; i < w.size(); ++i) width[i] = std::max(width[i], w[i]);
  }
  for (const auto& r : rows) {
    std::printf("%-*s  %-*s  %-*s  %-*s  %*s  %-*s  %-*s  %s\n", static_cast<int>(width[0]), r.name.c_str(),
                static_cast<int>(width[1]), r.family.c_str(), static_cast<int>(width[2]), r.paper.c_str(),
                static_cast<int>(width[3]), r.complexity.c_str(), static_cast<int>(width[4]), r.params.c_str(),
                static_cast<int>(width[5]), r.devices.c_str(), static_cast<int>(width[6]), r.precisions.c_str(),
                r.options.c_str());
  }
  return 0;
}

}  // namespace attnseg::app
