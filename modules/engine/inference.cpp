#include "engine/inference.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/fmt/fmt.h>

#include <array>
#include <cmath>
#include <vector>

#include "engine/timing.h"

namespace attnseg {
namespace {

// Sliding windows over an h x w image: mmsegmentation's grid, the last row and column moved
// back to end at the border.
struct WindowGrid {
  int64_t crop_h, crop_w, rows, cols;
};

WindowGrid window_grid(const EvalSettings& s, int64_t h, int64_t w) {
  const int64_t ch = std::min(s.crop_size[0], h), cw = std::min(s.crop_size[1], w);
  return {ch, cw, std::max<int64_t>(h - ch + s.stride[0] - 1, 0) / s.stride[0] + 1,
          std::max<int64_t>(w - cw + s.stride[1] - 1, 0) / s.stride[1] + 1};
}

at::Tensor slide(Segmentor& model, const at::Tensor& image, const EvalSettings& s) {
  const int64_t h = image.size(2), w = image.size(3);
  const auto [ch, cw, rows, cols] = window_grid(s, h, w);
  at::Tensor sum = at::zeros({1, model->num_classes(), h, w}, image.options());
  at::Tensor count = at::zeros({1, 1, h, w}, image.options());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t y2 = std::min(r * s.stride[0] + ch, h), x2 = std::min(c * s.stride[1] + cw, w);
      const int64_t y1 = std::max<int64_t>(y2 - ch, 0), x1 = std::max<int64_t>(x2 - cw, 0);
      const at::Tensor crop = image.slice(2, y1, y2).slice(3, x1, x2);
      sum.slice(2, y1, y2).slice(3, x1, x2) += model->predict(crop).to(sum.scalar_type());
      count.slice(2, y1, y2).slice(3, x1, x2) += 1;
    }
  }
  return sum / count;
}

}  // namespace

at::Tensor resized(const at::Tensor& t, const std::array<int64_t, 2>& size) {
  if (t.size(2) == size[0] && t.size(3) == size[1]) return t;
  return at::upsample_bilinear2d(t, size, false);
}

at::Tensor segment(Segmentor& model, const at::Tensor& image, const EvalSettings& settings,
                   const Runtime& runtime, at::Tensor* block_input) {
  AutocastGuard autocast(runtime);
  const bool whole = settings.mode != "slide";
  const int64_t h = image.size(2), w = image.size(3);
  auto run = [&](const at::Tensor& x) { return whole ? model->predict(x) : slide(model, x, settings); };
  const int64_t views = static_cast<int64_t>(settings.scales.size()) * (settings.flip ? 2 : 1);
  at::Tensor scores;
  if (views == 1) {
    const std::array<int64_t, 2> size = view_size(settings, h, w, settings.scales[0]);
    if (block_input != nullptr && whole && size == std::array<int64_t, 2>{h, w}) {
      Prediction p = model->predict_with_block_input(image);
      *block_input = p.block_input;
      return p.scores;
    }
    scores = resized(run(resized(image, size)), {h, w});
  } else {
    // Several views (each ratio, and its mirror image with eval.flip): each view's scores are
    // resized back to the image and turned into probabilities, which are averaged, every view
    // weighing the same, as mmsegmentation's test-time augmentation does. The scores returned
    // are the average's logarithm: their softmax is that average, their arg-max its arg-max.
    at::Tensor log_sum;  // log of the views' summed probabilities
    auto add = [&](const at::Tensor& view_scores) {
      const at::Tensor log_p = at::log_softmax(resized(view_scores, {h, w}).to(at::kFloat), 1);
      log_sum = log_sum.defined() ? at::logaddexp(log_sum, log_p) : log_p;
    };
    for (const double ratio : settings.scales) {
      const at::Tensor x = resized(image, view_size(settings, h, w, ratio));
      add(run(x));
      if (settings.flip) add(run(x.flip({3})).flip({3}));
    }
    scores = log_sum - std::log(static_cast<double>(views));
  }
  if (block_input != nullptr) *block_input = model->head()->block_input(model->backbone()->forward(image).stage4);
  return scores;
}

std::string describe_inference(const EvalSettings& s) {
  std::string out = s.mode + " inference";
  if (s.mode == "slide") {
    out += " (" + std::to_string(s.crop_size[0]) + "x" + std::to_string(s.crop_size[1]) + " windows, stride " +
           std::to_string(s.stride[0]) + "x" + std::to_string(s.stride[1]) + ")";
  }
  if (s.scale[0] > 0) out += ", fitted to " + std::to_string(s.scale[0]) + "x" + std::to_string(s.scale[1]);
  if (s.flip) out += ", flip";
  if (s.scales.size() != 1 || s.scales[0] != 1.0) {
    out += ", scales";
    for (size_t i = 0; i < s.scales.size(); ++i) out += fmt::format("{}{}", i == 0 ? " " : ", ", s.scales[i]);
  }
  return out;
}

cv::Mat class_map(const at::Tensor& scores) {
  const at::Tensor planes = scores.to(at::kCPU, at::kFloat).contiguous();
  const int64_t k = planes.size(1), h = planes.size(2), w = planes.size(3), n = h * w;
  const float* p = planes.data_ptr<float>();
  std::vector<float> best(p, p + n);
  cv::Mat labels(static_cast<int>(h), static_cast<int>(w), CV_8UC1, cv::Scalar(0));
  uint8_t* out = labels.ptr<uint8_t>();
  for (int64_t c = 1; c < k; ++c) {
    const float* plane = p + c * n;
    for (int64_t i = 0; i < n; ++i) {
      if (plane[i] > best[i]) {
        best[i] = plane[i];
        out[i] = static_cast<uint8_t>(c);
      }
    }
  }
  return labels;
}

namespace {

// Median latency of `infer` (scores of `image`) after warm-up, in eval and inference mode under
// the runtime's precision.
template <typename Infer>
SpeedResult time_inference(Segmentor& model, const at::Tensor& image, Infer&& infer, int64_t warmup, int64_t runs,
                           const Runtime& runtime) {
  c10::InferenceMode guard;
  AutocastGuard autocast(runtime);
  model->eval();
  const Timing t = time_runs(
      [&] {
        const at::Tensor out = infer();
        (void)out.sum().item<float>();  // waits for an asynchronous device
      },
      warmup, runs);
  SpeedResult r;
  r.median_ms = t.median_ms;
  r.p25_ms = t.p25_ms;
  r.p75_ms = t.p75_ms;
  r.fps = 1000.0 / r.median_ms;
  r.resolution = {image.size(2), image.size(3)};
  r.threads = at::get_num_threads();
  r.device = runtime.device.str();
  r.precision = precision_name(runtime.precision);
  return r;
}

}  // namespace

int64_t forwards_per_image(const EvalSettings& settings, int64_t h, int64_t w) {
  int64_t forwards = 0;
  for (const double ratio : settings.scales) {
    const std::array<int64_t, 2> size = view_size(settings, h, w, ratio);
    const WindowGrid grid = window_grid(settings, size[0], size[1]);
    forwards += settings.mode == "slide" ? grid.rows * grid.cols : 1;
  }
  return settings.flip ? 2 * forwards : forwards;
}

SpeedResult measure_speed(Segmentor& model, const at::Tensor& image, int64_t warmup, int64_t runs,
                          const Runtime& runtime) {
  return time_inference(model, image, [&] { return model->predict(image); }, warmup, runs, runtime);
}

SpeedResult measure_inference_speed(Segmentor& model, const at::Tensor& image, const EvalSettings& settings,
                                    int64_t warmup, int64_t runs, const Runtime& runtime) {
  SpeedResult r = time_inference(
      model, image, [&] { return segment(model, image, settings, runtime); }, warmup, runs, runtime);
  r.forwards = forwards_per_image(settings, image.size(2), image.size(3));
  return r;
}

}  // namespace attnseg
