#include "data/synthetic.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "data/rng.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

enum SynthClass : uint8_t {
  kBackground = 0,
  kBeaconWarm = 1,
  kBeaconCool = 2,
  kBox = 3,
  kDiscWarm = 4,
  kDiscCool = 5
};

cv::Scalar jitter(Rng& rng, cv::Scalar colour, double amount) {
  for (int c = 0; c < 3; ++c) colour[c] = std::clamp(colour[c] + rng.uniform(-amount, amount), 0.0, 255.0);
  return colour;
}

void add_noise(cv::Mat& image, Rng& rng, double sigma) {
  cv::Mat noise(image.size(), CV_16SC3);
  cv::theRNG().state = rng.next();
  cv::randn(noise, cv::Scalar::all(0), cv::Scalar::all(sigma));
  cv::Mat widened;
  image.convertTo(widened, CV_16SC3);
  widened += noise;
  widened.convertTo(image, CV_8UC3);
}

void write_atomically(const fs::path& path, const cv::Mat& image) {
  const fs::path tmp = path.string() + ".tmp.png";
  if (!cv::imwrite(tmp.string(), image)) throw Error("cannot write " + tmp.string());
  fs::rename(tmp, path);
}

}  // namespace

const std::vector<std::string>& synthetic_class_names() {
  static const std::vector<std::string> names{"background", "beacon_warm", "beacon_cool",
                                              "box",        "disc_warm",   "disc_cool"};
  return names;
}

SynthScene make_synthetic_scene(int64_t size, uint64_t seed, const std::string& split,
                                int64_t index) {
  if (size < 32) throw Error("synthetic image size must be at least 32, got " + std::to_string(size));
  const uint64_t split_id = split == "train" ? 1 : 2;
  Rng rng{seed, split_id, static_cast<uint64_t>(index)};
  const int s = static_cast<int>(size);
  SynthScene scene;
  scene.image = cv::Mat(s, s, CV_8UC3);
  scene.mask = cv::Mat(s, s, CV_8UC1, cv::Scalar(kBackground));

  // Background: a low-saturation gradient between two random greys-with-tint.
  const cv::Scalar a = jitter(rng, cv::Scalar(110, 110, 110), 20);
  const cv::Scalar b = jitter(rng, cv::Scalar(150, 150, 150), 20);
  const bool vertical = rng.chance(0.5);
  for (int y = 0; y < s; ++y) {
    for (int x = 0; x < s; ++x) {
      const double t = static_cast<double>(vertical ? y : x) / (s - 1);
      cv::Vec3b& px = scene.image.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) px[c] = cv::saturate_cast<uint8_t>(a[c] * (1 - t) + b[c] * t);
    }
  }

  // Beacon: a band along one border, warm (red) or cool (blue), a quarter of the side thick.
  scene.side = static_cast<int>(rng.integer(0, 3));
  scene.warm = rng.chance(0.5);
  const int thick = s / 4;
  const int gap = 3 * s / 8;  // least distance from any disc pixel to the beacon
  const cv::Rect strips[4] = {{0, 0, s, thick}, {s - thick, 0, thick, s},
                              {0, s - thick, s, thick}, {0, 0, thick, s}};
  const cv::Rect beacon = strips[scene.side];

  // Boxes: locally recognisable textured squares (green stripes), anywhere.
  const int boxes = static_cast<int>(rng.integer(1, 2));
  for (int i = 0; i < boxes; ++i) {
    const int w = static_cast<int>(rng.integer(s / 8, s / 4));
    const cv::Rect r(static_cast<int>(rng.integer(0, s - w)), static_cast<int>(rng.integer(0, s - w)),
                     w, w);
    const cv::Scalar colour = jitter(rng, cv::Scalar(60, 170, 60), 25);
    scene.image(r).setTo(colour);
    for (int y = r.y; y < r.y + r.height; y += 4) {
      cv::line(scene.image, {r.x, y}, {r.x + r.width - 1, y}, colour * 0.5, 1);
    }
    scene.mask(r).setTo(kBox);
  }

  // Discs: identical grey discs beyond `gap` from the beacon's inner edge.
  const uint8_t disc_class = scene.warm ? kDiscWarm : kDiscCool;
  const int discs = static_cast<int>(rng.integer(2, 3));
  for (int i = 0; i < discs; ++i) {
    const int r = static_cast<int>(rng.integer(s / 14, s / 7));
    const int lo = thick + gap + r, hi = s - 1 - r;  // along the axis away from the beacon
    int along = static_cast<int>(rng.integer(lo, std::max(lo, hi)));
    int across = static_cast<int>(rng.integer(r, s - 1 - r));
    if (scene.side == 1 || scene.side == 2) along = s - 1 - along;  // beacon at high end
    const cv::Point centre = (scene.side == 0 || scene.side == 2) ? cv::Point(across, along)
                                                                    : cv::Point(along, across);
    const cv::Scalar grey = jitter(rng, cv::Scalar(200, 200, 200), 10);
    cv::circle(scene.image, centre, r, grey, cv::FILLED, cv::LINE_8);
    cv::circle(scene.image, centre, r / 2, grey * 0.8, 2, cv::LINE_8);
    cv::circle(scene.mask, centre, r, cv::Scalar(disc_class), cv::FILLED, cv::LINE_8);
  }

  const cv::Scalar beacon_colour =
      scene.warm ? jitter(rng, cv::Scalar(40, 40, 220), 25) : jitter(rng, cv::Scalar(220, 60, 40), 25);
  scene.image(beacon).setTo(beacon_colour);
  // The beacon's own class says its colour, so features there learn to tell the two apart;
  // carrying that to the far discs is the attention block's job.
  scene.mask(beacon).setTo(scene.warm ? kBeaconWarm : kBeaconCool);

  add_noise(scene.image, rng, 6.0);
  return scene;
}

void write_synthetic_dataset(const fs::path& out, const SynthOptions& options) {
  if (options.train <= 0) throw Error("--train must be positive, got " + std::to_string(options.train));
  if (options.val <= 0) throw Error("--val must be positive, got " + std::to_string(options.val));
  if (options.size < 32) throw Error("--size must be at least 32, got " + std::to_string(options.size));
  std::error_code ec;
  fs::create_directories(out / "images", ec);
  fs::create_directories(out / "masks", ec);
  if (ec || !fs::is_directory(out / "images")) {
    throw Error("cannot create dataset directory " + (out / "images").string());
  }
  for (const std::string split : {"train", "val"}) {
    const int64_t count = split == "train" ? options.train : options.val;
    const fs::path list = out / (split + ".txt");
    const fs::path tmp_list = list.string() + ".tmp";
    std::ofstream names(tmp_list);
    if (!names) throw Error("cannot write " + tmp_list.string());
    for (int64_t i = 0; i < count; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "%s_%05lld", split.c_str(), static_cast<long long>(i));
      const SynthScene scene = make_synthetic_scene(options.size, options.seed, split, i);
      write_atomically(out / "images" / (std::string(name) + ".png"), scene.image);
      write_atomically(out / "masks" / (std::string(name) + ".png"), scene.mask);
      names << name << '\n';
    }
    names.close();
    if (!names) throw Error("cannot write " + tmp_list.string());
    fs::rename(tmp_list, list);
  }
}

}  // namespace attnseg
