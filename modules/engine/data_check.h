// `attnseg data check`: walks both splits of a config's dataset before a long run meets them,
// counting samples, image sizes and class frequencies, and listing every file that is
// missing, unreadable, of another size than its image or holding labels the dataset never
// stores.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace attnseg {

struct SplitCheck {
  std::string split;
  int64_t samples = 0, readable = 0;
  std::vector<int64_t> class_pixels;  // per class, over the readable samples
  int64_t ignored_pixels = 0;
  std::vector<int> widths, heights;   // of the readable images
};

struct DataCheck {
  std::string type, root;
  std::vector<std::string> class_names;
  std::vector<SplitCheck> splits;     // train, val
  std::vector<std::string> defects;   // one line each, naming the file
};

// Config errors and a layout that cannot be listed at all (no root, no split file or
// folder) throw; defects of single samples are collected.
DataCheck check_dataset(const Config& config);
std::string format_data_check(const DataCheck& check);

}  // namespace attnseg
