// The embedded synthetic dataset: wide scenes (size × 6·size) whose labels need long-range
// context. Grey discs look the same everywhere; whether a disc is `disc_warm` or `disc_cool`
// depends only on the colour of a beacon band at the far end of the scene, at least
// 3.75·size away, beyond the receptive field of the default CPU model's convolutions at
// size 64. A model that sees only a neighbourhood can do no better than guess between the
// two; a block with global reach can read the beacon. The rules are in data/README.md.
#pragma once

#include <opencv2/core.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace attnseg {

// Scene width in multiples of its height.
constexpr int kSynthWidthFactor = 6;

struct SynthOptions {
  int64_t train = 1000;
  int64_t val = 200;
  int64_t size = 64;  // scene height; the width is kSynthWidthFactor times that
  uint64_t seed = 0;
};

// Class ids of the synthetic dataset, in order.
const std::vector<std::string>& synthetic_class_names();

struct SynthScene {
  cv::Mat image;  // 8-bit BGR
  cv::Mat mask;   // 8-bit class ids
  bool warm;      // beacon colour
  int side;       // where the beacon is: 1 right end, 3 left end
};

// One scene, a pure function of (size, seed, split, index).
SynthScene make_synthetic_scene(int64_t size, uint64_t seed, const std::string& split,
                                int64_t index);

// Writes the folder layout (images/, masks/, train.txt, val.txt) under `out`. Files are
// written under temporary names and renamed, so an interrupted run leaves no half image.
void write_synthetic_dataset(const std::filesystem::path& out, const SynthOptions& options);

}  // namespace attnseg
