#include "engine/data_check.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "data/dataset.h"
#include "engine/experiment.h"

namespace attnseg {

namespace {

namespace fs = std::filesystem;

SplitCheck check_split(const FolderDatasetOptions& options, size_t classes,
                       std::vector<std::string>& defects) {
  const FolderDataset dataset(options, /*require_files=*/false);
  SplitCheck s;
  s.split = options.split;
  s.samples = static_cast<int64_t>(dataset.size());
  s.class_pixels.assign(classes, 0);
  for (size_t i = 0; i < dataset.size(); ++i) {
    const std::string missing = dataset.missing_file(i);
    if (!missing.empty()) {
      defects.push_back(missing);
      continue;
    }
    Sample sample;
    try {
      sample = dataset.load(i);
    } catch (const Error& e) {
      defects.push_back(e.what());
      continue;
    }
    ++s.readable;
    s.widths.push_back(sample.image.cols);
    s.heights.push_back(sample.image.rows);
    std::vector<int64_t> counts(256, 0);
    for (int y = 0; y < sample.mask.rows; ++y) {
      const uint8_t* row = sample.mask.ptr<uint8_t>(y);
      for (int x = 0; x < sample.mask.cols; ++x) ++counts[row[x]];
    }
    for (size_t c = 0; c < classes; ++c) s.class_pixels[c] += counts[c];
    s.ignored_pixels += counts[255];
  }
  return s;
}

std::string size_summary(std::vector<int> w, std::vector<int> h) {
  if (w.empty()) return "no readable image";
  std::vector<int64_t> area(w.size());
  std::vector<size_t> order(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    area[i] = int64_t{w[i]} * h[i];
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return area[a] < area[b]; });
  auto wh = [&](size_t i) { return std::to_string(w[i]) + "x" + std::to_string(h[i]); };
  const size_t lo = order.front(), mid = order[order.size() / 2], hi = order.back();
  if (area[lo] == area[hi] && w[lo] == w[hi]) return "all " + wh(lo);
  return "smallest " + wh(lo) + ", median " + wh(mid) + ", largest " + wh(hi) + " (by area)";
}

}  // namespace

DataCheck check_dataset(const Config& config) {
  const Experiment x = read_experiment(config);  // the whole config is checked first
  DataCheck check;
  check.type = x.data.type;
  check.root = x.data.train.root.string();
  check.class_names = x.data.class_names;
  for (const auto* options : {&x.data.train, &x.data.val}) {
    check.splits.push_back(check_split(*options, x.data.class_names.size(), check.defects));
  }
  return check;
}

std::string format_data_check(const DataCheck& c) {
  std::string out =
      c.type + " dataset at " + c.root + ", " + std::to_string(c.class_names.size()) + " classes\n";
  for (const auto& s : c.splits) {
    out += "  " + s.split + ": " + std::to_string(s.samples) + " samples, " +
           std::to_string(s.readable) + " readable; image sizes " +
           size_summary(s.widths, s.heights) + "\n";
  }
  out += "\nclass frequencies (% of labelled pixels)\n";
  char line[160];
  std::snprintf(line, sizeof(line), "  %-22s", "class");
  out += line;
  for (const auto& s : c.splits) {
    std::snprintf(line, sizeof(line), " %10s", s.split.c_str());
    out += line;
  }
  out += "\n";
  std::vector<int64_t> labelled;
  for (const auto& s : c.splits) {
    int64_t n = 0;
    for (int64_t p : s.class_pixels) n += p;
    labelled.push_back(n);
  }
  for (size_t k = 0; k < c.class_names.size(); ++k) {
    std::snprintf(line, sizeof(line), "  %-22s", c.class_names[k].c_str());
    out += line;
    for (size_t j = 0; j < c.splits.size(); ++j) {
      const auto& s = c.splits[j];
      std::snprintf(line, sizeof(line), " %10.2f",
                    labelled[j] > 0 ? 100.0 * static_cast<double>(s.class_pixels[k]) /
                                          static_cast<double>(labelled[j])
                                    : 0.0);
      out += line;
    }
    out += "\n";
  }
  std::snprintf(line, sizeof(line), "  %-22s", "(ignored, % of all)");
  out += line;
  for (size_t j = 0; j < c.splits.size(); ++j) {
    const int64_t all = labelled[j] + c.splits[j].ignored_pixels;
    std::snprintf(
        line, sizeof(line), " %10.2f",
        all > 0 ? 100.0 * static_cast<double>(c.splits[j].ignored_pixels) / static_cast<double>(all)
                : 0.0);
    out += line;
  }
  out += "\n";
  if (c.defects.empty()) {
    out += "\nno defects\n";
  } else {
    out += "\n" + std::to_string(c.defects.size()) +
           (c.defects.size() == 1 ? " defect:\n" : " defects:\n");
    for (const auto& d : c.defects) out += "  " + d + "\n";
  }
  return out;
}

}  // namespace attnseg
