#include "data/synthetic.h"

#include <opencv2/imgproc.hpp>

#include <cmath>
#include <cstdio>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/rng.h"

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

}  // namespace

const std::vector<std::string>& synthetic_class_names() {
  static const std::vector<std::string> names{"background", "beacon_warm", "beacon_cool",
                                              "box",        "disc_warm",   "disc_cool"};
  return names;
}

SynthScene make_synthetic_scene(int64_t size, uint64_t seed, const std::string& split,
                                int64_t index) {
  if (size < 16) throw Error("synthetic image size must be at least 16, got " + std::to_string(size));
  const uint64_t split_id = split == "train" ? 1 : 2;
  Rng rng{seed, split_id, static_cast<uint64_t>(index)};
  const int h = static_cast<int>(size), w = kSynthWidthFactor * h;
  SynthScene scene;
  scene.image = cv::Mat(h, w, CV_8UC3);
  scene.mask = cv::Mat(h, w, CV_8UC1, cv::Scalar(kBackground));

  // Background: a low-saturation gradient between two random greys-with-tint.
  const cv::Scalar a = jitter(rng, cv::Scalar(110, 110, 110), 20);
  const cv::Scalar b = jitter(rng, cv::Scalar(150, 150, 150), 20);
  const bool vertical = rng.chance(0.5);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double t = vertical ? static_cast<double>(y) / (h - 1) : static_cast<double>(x) / (w - 1);
      cv::Vec3b& px = scene.image.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) px[c] = cv::saturate_cast<uint8_t>(a[c] * (1 - t) + b[c] * t);
    }
  }

  // Beacon: a band across the left or right end, h wide, warm (red) or cool (blue).
  scene.side = rng.chance(0.5) ? 1 : 3;
  scene.warm = rng.chance(0.5);
  const bool right = scene.side == 1;
  const cv::Rect beacon(right ? w - h : 0, 0, h, h);

  // Boxes: locally recognisable textured squares (green stripes), anywhere.
  const int boxes = static_cast<int>(rng.integer(2, 4));
  for (int i = 0; i < boxes; ++i) {
    const int side = static_cast<int>(rng.integer(h / 4, h / 2));
    const cv::Rect r(static_cast<int>(rng.integer(0, w - side)),
                     static_cast<int>(rng.integer(0, h - side)), side, side);
    const cv::Scalar colour = jitter(rng, cv::Scalar(60, 170, 60), 25);
    scene.image(r).setTo(colour);
    for (int y = r.y; y < r.y + r.height; y += 4) {
      cv::line(scene.image, {r.x, y}, {r.x + r.width - 1, y}, colour * 0.5, 1);
    }
    scene.mask(r).setTo(kBox);
  }

  // Discs: identical grey discs in the last 1.25·h of the far end, so every disc pixel is at
  // least 3.75·h from the beacon.
  const uint8_t disc_class = scene.warm ? kDiscWarm : kDiscCool;
  const int discs = static_cast<int>(rng.integer(2, 3));
  for (int i = 0; i < discs; ++i) {
    const int r = static_cast<int>(rng.integer(h / 6, h / 4));
    int x = static_cast<int>(rng.integer(w - 5 * h / 4 + r, w - 1 - r));
    if (right) x = w - 1 - x;
    const cv::Point centre(x, static_cast<int>(rng.integer(r, h - 1 - r)));
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
  if (options.train <= 0 || options.val <= 0) {
    throw Error("synthetic dataset: the train and val splits need at least one scene each, got " +
                std::to_string(options.train) + " and " + std::to_string(options.val));
  }
  std::error_code ec;
  fs::create_directories(out / "images", ec);
  fs::create_directories(out / "masks", ec);
  if (ec || !fs::is_directory(out / "images")) {
    throw Error("cannot create dataset directory " + (out / "images").string());
  }
  for (const std::string split : {"train", "val"}) {
    const int64_t count = split == "train" ? options.train : options.val;
    std::string names;
    for (int64_t i = 0; i < count; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "%s_%05lld", split.c_str(), static_cast<long long>(i));
      const SynthScene scene = make_synthetic_scene(options.size, options.seed, split, i);
      write_png_atomically(out / "images" / (std::string(name) + ".png"), scene.image);
      write_png_atomically(out / "masks" / (std::string(name) + ".png"), scene.mask);
      names += std::string(name) + "\n";
    }
    write_text_atomically(out / (split + ".txt"), names);
  }
}

}  // namespace attnseg
