// The embedded synthetic dataset: scenes whose labels need long-range context. Grey discs
// look the same everywhere; whether a disc is `disc_warm` or `disc_cool` depends only on the
// colour of a beacon strip on the far side of the image. A model that sees only a
// neighbourhood can do no better than guess between the two; a block with global reach can
// read the beacon. The rules are documented in data/README.md.
#pragma once

#include <opencv2/core.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace attnseg {

struct SynthOptions {
  int64_t train = 1000;
  int64_t val = 200;
  int64_t size = 128;
  uint64_t seed = 0;
};

// Class ids of the synthetic dataset, in order.
const std::vector<std::string>& synthetic_class_names();

struct SynthScene {
  cv::Mat image;  // 8-bit BGR
  cv::Mat mask;   // 8-bit class ids
  bool warm;      // beacon colour
  int side;       // 0 top, 1 right, 2 bottom, 3 left
};

// One scene, a pure function of (size, seed, split, index).
SynthScene make_synthetic_scene(int64_t size, uint64_t seed, const std::string& split,
                                int64_t index);

// Writes the folder layout (images/, masks/, train.txt, val.txt) under `out`. Files are
// written under temporary names and renamed, so an interrupted run leaves no half image.
void write_synthetic_dataset(const std::filesystem::path& out, const SynthOptions& options);

}  // namespace attnseg
