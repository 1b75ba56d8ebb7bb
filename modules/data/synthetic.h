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

// Scene width in multiples of its height: beacon scenes, reach scenes.
constexpr int kSynthWidthFactor = 6;
constexpr int kReachWidthFactor = 8;

struct SynthOptions {
  int64_t train = 1000;
  int64_t val = 200;
  int64_t size = 64;  // scene height; the width is kSynthWidthFactor (reach: kReachWidthFactor) times that
  uint64_t seed = 0;
  std::string task = "beacon";  // "beacon" or "reach"
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

// The second family, `reach` (size × 8·size): a textured key patch (checkerboard or stripes of
// the same two greys, so no colour tells them apart) near one end, and one grey triangle in
// each of four distance bins from it; a triangle is `tri_checker` or `tri_stripes` after the
// key's texture. Yellow lamps (filled discs) anywhere are a purely local class. Distances are L∞ (Chebyshev)
// from the key's square, the shape of a convolution's receptive field, and every pixel of a
// bin's triangle lies in that bin: the per-bin IoU is a block's reach curve.
const std::vector<std::string>& reach_class_names();
// Bin edges in pixels for scene height `size`: bin k (1-based) is [edges[k-1], edges[k]).
// At 64: 16, 64, 160, 320, 416.
std::vector<int> reach_bin_edges(int64_t size);
// Region names as `regions.txt` lists them ("16-64 px", ...).
std::vector<std::string> reach_bin_names(int64_t size);

struct ReachScene {
  cv::Mat image;    // 8-bit BGR
  cv::Mat mask;     // 8-bit class ids
  cv::Mat regions;  // 8-bit: the distance bin (1..4) on each triangle's pixels, 0 elsewhere
  cv::Rect key;
  bool checker;     // the key's texture
};
ReachScene make_reach_scene(int64_t size, uint64_t seed, const std::string& split, int64_t index);

// Writes the folder layout (images/, masks/, train.txt, val.txt; for `reach` also regions/
// and regions.txt, which `eval` reads for per-region IoU) at `out`. The dataset is built whole
// in a hidden stage beside `out` and then moved into place, so a failed or killed run leaves
// what was at `out` as it was. `out` may be new, empty, or a dataset synth wrote, which is
// replaced whole (no scene or region of it stays); a directory holding anything else is
// refused. Returns true when it replaced a dataset.
bool write_synthetic_dataset(const std::filesystem::path& out, const SynthOptions& options);

}  // namespace attnseg
