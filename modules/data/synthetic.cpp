#include "data/synthetic.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include <signal.h>
#include <sys/types.h>

#include <cerrno>

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

// A low-saturation gradient between two random greys-with-tint.
void paint_background(cv::Mat& image, Rng& rng) {
  const int h = image.rows, w = image.cols;
  const cv::Scalar a = jitter(rng, cv::Scalar(110, 110, 110), 20);
  const cv::Scalar b = jitter(rng, cv::Scalar(150, 150, 150), 20);
  const bool vertical = rng.chance(0.5);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double t = vertical ? static_cast<double>(y) / (h - 1) : static_cast<double>(x) / (w - 1);
      cv::Vec3b& px = image.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) px[c] = cv::saturate_cast<uint8_t>(a[c] * (1 - t) + b[c] * t);
    }
  }
}

enum ReachClass : uint8_t {
  kReachBackground = 0,
  kKeyChecker = 1,
  kKeyStripes = 2,
  kLamp = 3,
  kTriChecker = 4,
  kTriStripes = 5
};

// L∞ distance from column/row `v` to the closed interval [lo, hi].
int gap(int v, int lo, int hi) { return std::max({lo - v, v - hi, 0}); }

// Smallest and largest L∞ distance from the pixels of `box` to those of `key`.
std::pair<int, int> box_distance(const cv::Rect& box, const cv::Rect& key) {
  const int kx0 = key.x, kx1 = key.x + key.width - 1, ky0 = key.y, ky1 = key.y + key.height - 1;
  const int bx0 = box.x, bx1 = box.x + box.width - 1, by0 = box.y, by1 = box.y + box.height - 1;
  // Along each axis the gap is convex, so its minimum over the box is at the nearest point
  // (0 when the ranges overlap) and its maximum at one of the two ends.
  const int min_x = (bx1 < kx0) ? kx0 - bx1 : (bx0 > kx1 ? bx0 - kx1 : 0);
  const int min_y = (by1 < ky0) ? ky0 - by1 : (by0 > ky1 ? by0 - ky1 : 0);
  const int max_x = std::max(gap(bx0, kx0, kx1), gap(bx1, kx0, kx1));
  const int max_y = std::max(gap(by0, ky0, ky1), gap(by1, ky0, ky1));
  return {std::max(min_x, min_y), std::max(max_x, max_y)};
}

bool overlaps(const cv::Rect& r, const std::vector<cv::Rect>& taken, int margin) {
  const cv::Rect grown(r.x - margin, r.y - margin, r.width + 2 * margin, r.height + 2 * margin);
  for (const cv::Rect& t : taken) {
    if ((grown & t).area() > 0) return true;
  }
  return false;
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

  paint_background(scene.image, rng);

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

const std::vector<std::string>& reach_class_names() {
  static const std::vector<std::string> names{"background", "key_checker", "key_stripes",
                                              "lamp",       "tri_checker", "tri_stripes"};
  return names;
}

std::vector<int> reach_bin_edges(int64_t size) {
  const double h = static_cast<double>(size);
  return {static_cast<int>(std::lround(h / 4)), static_cast<int>(size), static_cast<int>(std::lround(2.5 * h)),
          static_cast<int>(5 * size), static_cast<int>(std::lround(6.5 * h))};
}

std::vector<std::string> reach_bin_names(int64_t size) {
  const std::vector<int> e = reach_bin_edges(size);
  std::vector<std::string> names;
  for (size_t k = 1; k < e.size(); ++k) names.push_back(std::to_string(e[k - 1]) + "-" + std::to_string(e[k]) + " px");
  return names;
}

ReachScene make_reach_scene(int64_t size, uint64_t seed, const std::string& split, int64_t index) {
  if (size < 16) throw Error("synthetic image size must be at least 16, got " + std::to_string(size));
  const uint64_t split_id = split == "train" ? 1 : 2;
  // Its own stream: the reach family never shares draws with the beacon family.
  Rng rng{seed, split_id, static_cast<uint64_t>(index), 0x7265616368ull};
  const int h = static_cast<int>(size), w = kReachWidthFactor * h;
  ReachScene scene;
  scene.image = cv::Mat(h, w, CV_8UC3);
  scene.mask = cv::Mat(h, w, CV_8UC1, cv::Scalar(kReachBackground));
  scene.regions = cv::Mat(h, w, CV_8UC1, cv::Scalar(0));
  paint_background(scene.image, rng);

  // The key: a square of h/2..3h/4 within the first 1.25·h of one end, checkerboard or
  // horizontal stripes of the same two greys (the same mean either way).
  const int k = static_cast<int>(rng.integer(h / 2, 3 * h / 4));
  int x0 = static_cast<int>(rng.integer(0, h / 2));
  if (rng.chance(0.5)) x0 = w - x0 - k;
  scene.key = cv::Rect(x0, static_cast<int>(rng.integer(0, h - k)), k, k);
  scene.checker = rng.chance(0.5);
  const int cell = std::max(2, h / 16);
  const double dark = rng.uniform(50, 70), light = rng.uniform(190, 210);
  for (int y = 0; y < k; ++y) {
    for (int x = 0; x < k; ++x) {
      const bool on = scene.checker ? ((x / cell + y / cell) % 2 == 0) : ((y / cell) % 2 == 0);
      scene.image.at<cv::Vec3b>(scene.key.y + y, scene.key.x + x) = cv::Vec3b::all(cv::saturate_cast<uint8_t>(on ? light : dark));
    }
  }
  scene.mask(scene.key).setTo(scene.checker ? kKeyChecker : kKeyStripes);
  std::vector<cv::Rect> taken{scene.key};

  // Places a square of side `side` whose every pixel is within [lo, hi) of the key (any
  // distance when hi is 0) and clear of everything placed before.
  auto place = [&](int side, int lo, int hi) {
    for (int attempt = 0; attempt < 10000; ++attempt) {
      const cv::Rect r(static_cast<int>(rng.integer(0, w - side)), static_cast<int>(rng.integer(0, h - side)), side,
                       side);
      if (overlaps(r, taken, 2)) continue;
      const auto [near, far] = box_distance(r, scene.key);
      if (hi > 0 && (near < lo || far >= hi)) continue;
      taken.push_back(r);
      return r;
    }
    throw Error("reach scene " + split + " " + std::to_string(index) + ": no room for an object of " +
                std::to_string(side) + " px at distance " + std::to_string(lo) + "-" + std::to_string(hi));
  };

  // One triangle per distance bin, the same grey whatever the key.
  const std::vector<int> edges = reach_bin_edges(size);
  const uint8_t tri_class = scene.checker ? kTriChecker : kTriStripes;
  for (size_t bin = 1; bin < edges.size(); ++bin) {
    const int side = static_cast<int>(rng.integer(h / 4, h / 3));
    const cv::Rect r = place(side, edges[bin - 1], edges[bin]);
    const std::vector<cv::Point> corners{{r.x, r.y + side - 1}, {r.x + side - 1, r.y + side - 1}, {r.x + (side - 1) / 2, r.y}};
    cv::fillConvexPoly(scene.image, corners, jitter(rng, cv::Scalar(185, 185, 185), 10), cv::LINE_8);
    cv::fillConvexPoly(scene.mask, corners, cv::Scalar(tri_class), cv::LINE_8);
    cv::fillConvexPoly(scene.regions, corners, cv::Scalar(static_cast<double>(bin)), cv::LINE_8);
  }

  // Lamps: filled yellow discs, anywhere; recognisable on their own.
  const int lamps = static_cast<int>(rng.integer(1, 2));
  for (int i = 0; i < lamps; ++i) {
    const int radius = static_cast<int>(rng.integer(h / 8, h / 5));
    const cv::Rect r = place(2 * radius + 1, 0, 0);
    const cv::Point centre(r.x + radius, r.y + radius);
    cv::circle(scene.image, centre, radius, jitter(rng, cv::Scalar(40, 200, 220), 20), cv::FILLED, cv::LINE_8);
    cv::circle(scene.mask, centre, radius, cv::Scalar(kLamp), cv::FILLED, cv::LINE_8);
  }

  add_noise(scene.image, rng, 6.0);
  return scene;
}

namespace {

// What a synthetic dataset holds at its top: a directory holding anything else is not one
// that synth wrote, and is never replaced.
bool written_by_synth(const std::string& name) {
  for (const char* ours : {"images", "masks", "regions", "train.txt", "val.txt", "regions.txt"}) {
    if (name == ours) return true;
  }
  return false;
}

// The hidden name beside `out` whose temporary paths are the stages a run builds a dataset in
// (`.<name>.<pid>-<n>.tmp`).
fs::path stage_base(const fs::path& out) { return out.parent_path() / ("." + out.filename().string()); }

// Removes the stages beside `out` whose runs died (killed mid-way, or mid-swap with the
// dataset they were replacing).
void remove_dead_stages(const fs::path& out) {
  std::error_code ec;
  const std::string base = stage_base(out).filename().string();
  for (const auto& entry : fs::directory_iterator(out.parent_path(), ec)) {
    const pid_t pid = temporary_owner(entry.path().filename().string(), base);
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
}

void write_scenes(const fs::path& root, const SynthOptions& options) {
  const bool reach = options.task == "reach";
  for (const char* dir : {"images", "masks", "regions"}) {
    if (!reach && std::string(dir) == "regions") continue;
    std::error_code ec;
    fs::create_directories(root / dir, ec);
    if (ec) throw Error("cannot create dataset directory " + (root / dir).string() + ": " + ec.message());
  }
  if (reach) {
    std::string names;
    for (const std::string& name : reach_bin_names(options.size)) names += name + "\n";
    write_text_atomically(root / "regions.txt", names);
  }
  for (const std::string split : {"train", "val"}) {
    const int64_t count = split == "train" ? options.train : options.val;
    std::string names;
    for (int64_t i = 0; i < count; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "%s_%05lld", split.c_str(), static_cast<long long>(i));
      cv::Mat image, mask, regions;
      if (reach) {
        const ReachScene scene = make_reach_scene(options.size, options.seed, split, i);
        image = scene.image, mask = scene.mask, regions = scene.regions;
      } else {
        const SynthScene scene = make_synthetic_scene(options.size, options.seed, split, i);
        image = scene.image, mask = scene.mask;
      }
      const std::string file = std::string(name) + ".png";
      write_png_atomically(root / "images" / file, image);
      write_png_atomically(root / "masks" / file, mask);
      if (reach) write_png_atomically(root / "regions" / file, regions);
      names += std::string(name) + "\n";
    }
    write_text_atomically(root / (split + ".txt"), names);
  }
}

void replace_text(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

}  // namespace

bool write_synthetic_dataset(const fs::path& out_arg, const SynthOptions& options) {
  if (options.train <= 0 || options.val <= 0) {
    throw Error("synthetic dataset: the train and val splits need at least one scene each, got " +
                std::to_string(options.train) + " and " + std::to_string(options.val));
  }
  if (options.task != "reach" && options.task != "beacon") {
    throw Error("synthetic dataset: unknown task '" + options.task + "' (beacon or reach)");
  }
  std::error_code ec;
  fs::path out = fs::weakly_canonical(fs::absolute(out_arg), ec);  // a link: the place it names
  if (ec) throw Error("cannot resolve " + out_arg.string() + ": " + ec.message());
  if (!out.has_filename()) out = out.parent_path();  // "data/synthetic/"
  const fs::file_status status = fs::status(out, ec);
  const bool exists = fs::exists(status);
  if (exists && !fs::is_directory(status)) {
    throw Error("synthetic dataset: " + out_arg.string() + " exists and is not a directory");
  }
  bool empty = true;
  if (exists) {
    for (const auto& entry : fs::directory_iterator(out, ec)) {
      const std::string name = entry.path().filename().string();
      if (!written_by_synth(name)) {
        throw Error("synthetic dataset: " + out_arg.string() + " holds '" + name +
                    "', which synth does not write; choose a new or empty directory (synth "
                    "replaces only a dataset it wrote)");
      }
      empty = false;
    }
    if (ec) throw Error("cannot read " + out_arg.string() + ": " + ec.message());
  } else {
    fs::create_directories(out.parent_path(), ec);
    if (ec) throw Error("cannot create " + out.parent_path().string() + ": " + ec.message());
  }
  remove_dead_stages(out);

  // The dataset is built whole in a stage beside `out` and then moved into place, so a run
  // that fails or is killed leaves the previous dataset as it was, and a dataset that replaces
  // another keeps none of its files (a beacon set written over a reach set would otherwise
  // keep its regions).
  const fs::path stage = temporary_path(stage_base(out));
  try {
    write_scenes(stage, options);
  } catch (const Error& e) {
    fs::remove_all(stage, ec);
    // The file it names, where it would have been.
    const fs::path shown = out_arg.has_filename() ? out_arg : out_arg.parent_path();
    std::string what = e.what();
    replace_text(what, stage.string(), shown.string());
    throw Error(what);
  } catch (...) {
    fs::remove_all(stage, ec);
    throw;
  }
  const fs::path previous = temporary_path(stage_base(out));
  ec.clear();
  if (!empty) fs::rename(out, previous, ec);
  if (!ec) {
    fs::rename(stage, out, ec);
    if (ec && !empty) {
      std::error_code back;
      fs::rename(previous, out, back);
    }
  }
  if (ec) {
    const std::string reason = ec.message();
    fs::remove_all(stage, ec);
    throw Error("cannot move the new dataset into " + out_arg.string() + ": " + reason);
  }
  if (!empty) fs::remove_all(previous, ec);
  return !empty;
}

}  // namespace attnseg
