#include "engine/predict.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <glob.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/image_files.h"
#include "data/dataset_types.h"
#include "data/transforms.h"
#include "engine/checkpoint.h"
#include "engine/inference.h"
#include "engine/progress.h"
#include "engine/visualize.h"

namespace attnseg {

namespace fs = std::filesystem;

Predictor::Predictor(Experiment experiment, const Runtime& runtime, const fs::path& checkpoint)
    : experiment_(std::move(experiment)), runtime_(runtime), model_(build_model(experiment_, runtime_)) {
  load_checkpoint(checkpoint, model_);
  model_->eval();
}

at::Tensor Predictor::scores(const cv::Mat& rgb, const std::string& what) {
  if (rgb.empty() || rgb.type() != CV_8UC3) throw Error(what + ": not an 8-bit, 3-channel image");
  check_inference_size(experiment_, rgb.rows, rgb.cols, what);
  c10::InferenceMode guard;
  const at::Tensor image = image_to_tensor(rgb, experiment_.norm).unsqueeze(0).to(runtime_.device);
  return segment(model_, image, experiment_.eval, runtime_);
}

at::Tensor class_probabilities(const at::Tensor& scores) {
  return at::softmax(scores.to(at::kFloat), 1).squeeze(0).to(at::kCPU);
}

namespace {

bool is_image_file(const fs::path& file) {
  static const std::set<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
                                                   ".webp", ".ppm", ".pgm", ".pnm"};
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return extensions.count(ext) > 0;
}

bool has_glob_characters(const std::string& text) { return text.find_first_of("*?[") != std::string::npos; }

}  // namespace

std::vector<PredictInput> find_predict_inputs(const std::vector<std::string>& values) {
  std::vector<PredictInput> inputs;
  for (const std::string& value : values) {
    std::error_code ec;
    if (fs::is_directory(value, ec)) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(value, fs::directory_options::follow_directory_symlink, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec) && is_image_file(it->path())) found.push_back(it->path());
      }
      if (ec) throw Error("--input " + value + ": cannot list the directory (" + ec.message() + ")");
      if (found.empty()) throw Error("--input " + value + ": the directory holds no image file (png, jpg, bmp, tif, webp, ppm)");
      std::sort(found.begin(), found.end());
      for (const fs::path& file : found) {
        inputs.push_back({file, fs::relative(file, value).replace_extension()});
      }
    } else if (fs::exists(value, ec)) {
      inputs.push_back({value, fs::path(value).filename().replace_extension()});
    } else if (has_glob_characters(value)) {
      glob_t matches{};
      const int rc = ::glob(value.c_str(), 0, nullptr, &matches);
      std::vector<fs::path> found(matches.gl_pathv, matches.gl_pathv + (rc == 0 ? matches.gl_pathc : 0));
      globfree(&matches);
      found.erase(std::remove_if(found.begin(), found.end(), [](const fs::path& f) { return fs::is_directory(f); }),
                  found.end());
      if (found.empty()) throw Error("--input " + value + ": the pattern matches no file");
      for (const fs::path& file : found) inputs.push_back({file, file.filename().replace_extension()});
    } else {
      throw Error("--input " + value + " does not exist");
    }
  }
  std::map<fs::path, fs::path> owner;
  for (const PredictInput& input : inputs) {
    const auto [it, fresh] = owner.emplace(input.name, input.file);
    if (!fresh) {
      throw Error("--input: " + it->second.string() + " and " + input.file.string() + " would both write " +
                  (input.name.string() + ".png") + " (give them separately, into different --out directories)");
    }
  }
  return inputs;
}

PredictSummary predict_images(Predictor& predictor, const std::vector<PredictInput>& inputs, const fs::path& out,
                              const PredictOutputs& outputs) {
  const DatasetInfo& data = predictor.experiment().data;
  const bool indexed = !data.palette.empty() && !outputs.dataset_ids;
  const std::vector<cv::Vec3b> palette = class_palette(data);
  cv::Mat stored;  // class id -> the dataset's mask value, a 256-entry table for cv::LUT
  if (outputs.dataset_ids) {
    const std::vector<uint8_t> values = stored_values(find_dataset_type(data.type, "data.type"), data.class_names.size());
    stored = cv::Mat(1, 256, CV_8UC1, cv::Scalar(255));
    std::copy(values.begin(), values.end(), stored.ptr<uint8_t>());
  }
  // <out>/<kind>/<name><ext>, its folder made first
  const auto output = [&](const char* kind, const fs::path& name, const char* ext) {
    const fs::path file = out / kind / (name.string() + ext);
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (!fs::is_directory(file.parent_path())) {
      throw Error("cannot create the output directory " + file.parent_path().string() +
                  (ec ? ": " + ec.message() : ""));
    }
    return file;
  };
  PredictSummary summary;
  Progress progress(static_cast<int64_t>(inputs.size()), 0, true, "image");
  for (size_t i = 0; i < inputs.size(); ++i) {
    const PredictInput& input = inputs[i];
    const cv::Mat bgr = cv::imread(input.file.string(), cv::IMREAD_COLOR);
    cv::Mat rgb;
    at::Tensor scores;
    std::string failure;
    if (bgr.empty()) {
      failure = "cannot read image " + input.file.string() + " (missing, corrupt or not an image)";
    } else {
      cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
      try {
        scores = predictor.scores(rgb, "image " + input.file.string());
      } catch (const Error& e) {
        failure = e.what();
      }
    }
    if (failure.empty()) {
      const cv::Mat labels = class_map(scores);
      const fs::path label_file = output("labels", input.name, ".png");
      if (indexed) {
        write_text_atomically(label_file, encode_indexed_png(labels, palette));
      } else if (outputs.dataset_ids) {
        cv::Mat values;
        cv::LUT(labels, stored, values);
        write_png_atomically(label_file, values);
      } else {
        write_png_atomically(label_file, labels);
      }
      if (outputs.overlay) {
        write_png_atomically(output("overlays", input.name, ".png"), overlay_bgr(rgb, labels, palette, outputs.opacity));
      }
      if (outputs.probabilities) {
        write_text_atomically(output("probabilities", input.name, ".npy"), encode_npy(class_probabilities(scores)));
      }
      ++summary.written;
    } else {
      spdlog::warn("{}: skipped", failure);
      summary.failures.push_back(failure);
    }
    progress.update(static_cast<int64_t>(i + 1), "");
  }
  progress.finish();
  return summary;
}

}  // namespace attnseg
