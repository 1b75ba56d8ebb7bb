#include "engine/bench.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "attention/registry.h"
#include "core/error.h"
#include "core/runtime.h"
#include "engine/counters.h"
#include "engine/erf.h"
#include "engine/experiment.h"
#include "engine/timing.h"

namespace attnseg {

double growth_exponent(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  for (double v : y) {
    if (!(v > 0)) return std::numeric_limits<double>::quiet_NaN();
  }
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) {
    mx += std::log(x[i]) / n;
    my += std::log(y[i]) / n;
  }
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxx += (std::log(x[i]) - mx) * (std::log(x[i]) - mx);
    sxy += (std::log(x[i]) - mx) * (std::log(y[i]) - my);
  }
  return sxx > 0 ? sxy / sxx : std::numeric_limits<double>::quiet_NaN();
}

BenchSubject block_subject(const std::string& name, AttentionBlock block, int64_t channels) {
  BenchSubject s;
  s.name = name;
  s.module = block;
  s.in_channels = channels;
  s.infer = [block](const at::Tensor& x) { return block->forward(x); };
  s.train_loss = [block](const at::Tensor& x) { return block->forward(x).sum(); };
  s.macs = [block](const at::Tensor& x) { return block->macs(x.sizes().vec()); };
  return s;
}

BenchSubject model_subject(const std::string& name, Segmentor model) {
  const std::shared_ptr<SegmentorImpl> m = model.ptr();
  BenchSubject s;
  s.name = name;
  s.module = m;
  s.in_channels = 3;
  s.infer = [m](const at::Tensor& x) { return m->predict(x); };
  s.train_loss = [m](const at::Tensor& x) {
    const SegmentorOutput out = m->forward(x);
    return out.aux.defined() ? out.logits.sum() + out.aux.sum() : out.logits.sum();
  };
  s.macs = [m](const at::Tensor& x) {
    c10::InferenceMode guard;
    MacCounter counter;
    (void)m->predict(x);
    return counter.macs();
  };
  s.takes_images = true;
  return s;
}

at::Tensor random_input(const BenchSubject& subject, int64_t batch, const std::array<int64_t, 2>& size,
                        const Runtime& runtime) {
  const at::ScalarType type = runtime.autocast() && !subject.takes_images ? runtime.autocast_dtype() : at::kFloat;
  return at::randn({batch, subject.in_channels, size[0], size[1]}).to(runtime.device, type);
}

namespace {

// Forward and backward of the training loss (the caller puts the module in training mode),
// the gradients of the previous run dropped first so that none is accumulated into.
Timing time_backward(const BenchSubject& subject, const at::Tensor& x, int64_t warmup, int64_t iters,
                     const Runtime& runtime) {
  const std::vector<at::Tensor> parameters = subject.module->parameters();
  return time_runs(
      [&] {
        for (const auto& p : parameters) p.mutable_grad().reset();
        x.mutable_grad().reset();
        at::Tensor loss;
        {
          AutocastGuard autocast(runtime);
          loss = subject.train_loss(x);
        }
        loss.backward();
        (void)x.grad().view(-1)[0].item<float>();
      },
      warmup, iters);
}

// Peak tensor bytes of one training step, gradients of earlier runs dropped before the scope.
int64_t backward_peak(const BenchSubject& subject, const at::Tensor& x, const Runtime& runtime) {
  for (const auto& p : subject.module->parameters()) p.mutable_grad().reset();
  x.mutable_grad().reset();
  PeakMemory memory;
  at::Tensor loss;
  {
    AutocastGuard autocast(runtime);
    loss = subject.train_loss(x);
  }
  loss.backward();
  (void)x.grad().view(-1)[0].item<float>();
  return memory.peak_bytes();
}

// Peak tensor bytes of one forward in inference mode (the output's allocation included), the
// module in eval mode; the output's element count to `r->output_elements` where given, 0 for
// an output that is the input itself (the identity block moves nothing).
int64_t forward_peak(const BenchSubject& subject, const at::Tensor& x, const Runtime& runtime,
                     SizeResult* r = nullptr) {
  c10::InferenceMode guard;
  AutocastGuard autocast(runtime);
  PeakMemory memory;
  const at::Tensor y = subject.infer(x);
  if (r) {
    r->output_is_input = y.is_same(x);
    r->output_elements = r->output_is_input ? 0 : y.numel();
  }
  return memory.peak_bytes();
}

// Peak tensor bytes of one forward and, with `backward`, the larger of that and a training
// step's, on a random input of `size`.
int64_t measured_peak(const BenchSubject& subject, int64_t batch, const std::array<int64_t, 2>& size,
                      bool backward, const Runtime& runtime) {
  const at::Tensor x = random_input(subject, batch, size, runtime);
  subject.module->eval();
  int64_t peak = forward_peak(subject, x, runtime);
  if (backward) {
    subject.module->train();
    peak = std::max(peak, backward_peak(subject, x.detach().clone().requires_grad_(), runtime));
    subject.module->eval();
  }
  return peak;
}

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f GB", bytes / 1e9);
  return text;
}

}  // namespace

PeakEstimate estimate_peak(const BenchSubject& subject, int64_t batch, const std::array<int64_t, 2>& size,
                           bool backward, const Runtime& runtime, double limit_bytes) {
  std::vector<double> tokens, bytes;
  PeakEstimate e;
  auto extrapolate = [&](double n) {
    const size_t k = tokens.size();
    e.exponent = std::clamp(growth_exponent({tokens[k - 2], tokens[k - 1]}, {bytes[k - 2], bytes[k - 1]}), 1.0, 4.0);
    if (std::isnan(e.exponent)) e.exponent = 1.0;
    return bytes[k - 1] * std::pow(n / tokens[k - 1], e.exponent);
  };
  for (const int64_t shrink : {16, 8, 4, 2}) {
    const std::array<int64_t, 2> small{std::max<int64_t>(1, size[0] / shrink), std::max<int64_t>(1, size[1] / shrink)};
    const double n = static_cast<double>(small[0] * small[1]);
    if (!tokens.empty() && n <= tokens.back()) continue;
    if (tokens.size() >= 2 && extrapolate(n) > limit_bytes) break;  // the probe itself would not fit
    int64_t peak = 0;
    try {
      peak = measured_peak(subject, batch, small, backward, runtime);
    } catch (const std::exception&) {
      continue;  // too small for this subject (a model's strides, a block's windows)
    }
    if (peak <= 0) continue;
    tokens.push_back(n);
    bytes.push_back(static_cast<double>(peak));
    e.measured.push_back(small);
  }
  if (tokens.size() < 2) {
    e.measured.clear();
    return e;
  }
  e.bytes = extrapolate(static_cast<double>(size[0] * size[1]));
  return e;
}

SizeResult bench_input(const BenchSubject& subject, const at::Tensor& x, int64_t warmup, int64_t iters,
                       bool backward, const Runtime& runtime) {
  subject.module->eval();
  SizeResult r;
  r.size = {x.size(2), x.size(3)};
  r.macs = subject.macs(x);
  {
    c10::InferenceMode guard;
    AutocastGuard autocast(runtime);
    const Timing t = time_runs([&] { (void)subject.infer(x).sum().item<float>(); }, warmup, iters);
    r.median_ms = t.median_ms;
    r.p25_ms = t.p25_ms;
    r.p75_ms = t.p75_ms;
    r.images_per_s = 1000.0 * static_cast<double>(x.size(0)) / t.median_ms;
  }
  r.peak_bytes = forward_peak(subject, x, runtime, &r);
  if (backward) {
    subject.module->train();
    const at::Tensor xg = x.detach().clone().requires_grad_();
    const Timing train = time_backward(subject, xg, warmup, iters, runtime);
    r.train_median_ms = train.median_ms;
    r.train_p25_ms = train.p25_ms;
    r.train_p75_ms = train.p75_ms;
    r.train_peak_bytes = backward_peak(subject, xg, runtime);
    subject.module->eval();
  }
  return r;
}

Ceilings measure_ceilings(const Runtime& runtime) {
  const at::TensorOptions options =
      at::TensorOptions().device(runtime.device).dtype(runtime.autocast() ? runtime.autocast_dtype() : at::kFloat);
  c10::InferenceMode guard;
  Ceilings c;
  for (int64_t n = 256;; n *= 2) {
    const at::Tensor a = at::randn({n, n}, options), b = at::randn({n, n}, options);
    at::Tensor product = at::empty({n, n}, options);
    auto timed = [&](const char* how, const std::function<void()>& run) {
      const Timing t = time_runs(
          [&] {
            run();
            wait_for_device(runtime);
          },
          2, 5);
      const double rate = 2.0 * std::pow(static_cast<double>(n), 3) / (t.median_ms / 1e3);
      if (rate > c.matrix_flops_per_s) {
        c.matrix_flops_per_s = rate;
        c.matrix_n = n;
        c.matrix_how = how;
      }
      return t.median_ms;
    };
    // Both libraries a block's products go through: the BLAS (or cuBLAS) behind mm, and the
    // one behind convolutions (oneDNN on the CPU, about 1.9x OpenBLAS's rate here; cuDNN on GPUs):
    // the same n³ multiply-adds as a 1×1 convolution of n channels over n pixels.
    const double ms = timed("product", [&] { at::mm_out(product, a, b); });
    timed("1x1 convolution", [&] { (void)at::conv2d(a.view({1, n, 16, n / 16}), b.view({n, n, 1, 1})); });
    if (ms >= 20 || n >= 8192) break;
  }
  // 256 MB, past every cache: the copy's speed does not depend on the values.
  c.copy_bytes = int64_t{256} << 20;
  const at::Tensor source = at::ones({c.copy_bytes / static_cast<int64_t>(options.dtype().itemsize())}, options);
  at::Tensor target = at::empty_like(source);
  const Timing t = time_runs(
      [&] {
        target.copy_(source);
        wait_for_device(runtime);
      },
      2, 5);
  c.copy_bytes_per_s = 2.0 * static_cast<double>(c.copy_bytes) / (t.median_ms / 1e3);
  return c;
}

Floor floor_of(int64_t macs, int64_t bytes, const Ceilings& c) {
  const double arithmetic = 2.0 * static_cast<double>(macs) / c.matrix_flops_per_s;
  const double memory = static_cast<double>(bytes) / c.copy_bytes_per_s;
  return {1e3 * std::max(arithmetic, memory), memory > arithmetic};
}

int64_t minimum_bytes(int64_t input_elements, int64_t output_elements, int64_t parameters, Precision precision) {
  const int64_t width = precision == Precision::fp32 ? 4 : 2;
  return width * (input_elements + output_elements + parameters);
}

namespace {
// s.block_options grouped by the block they name, checked once: an option naming no listed block,
// or not of the form block.key=value, is an error (a key the block lacks: configure_block's).
std::map<std::string, std::vector<std::string>> options_by_block(const BenchSettings& s) {
  std::map<std::string, std::vector<std::string>> by_block;
  for (const std::string& option : s.block_options) {
    const std::string block = option.substr(0, option.find_first_of(".="));
    if (std::find(s.blocks.begin(), s.blocks.end(), block) == s.blocks.end()) {
      throw Error("--set " + option + ": '" + block + "' is not one of the blocks benched (--blocks)");
    }
    if (option.find('.') == std::string::npos || option.find('.') > option.find('=')) {
      throw Error("--set " + option + " must have the form block.key=value");
    }
    by_block[block].push_back(option);
  }
  return by_block;
}

// Block `name` with its --set options (`own`), or its defaults.
AttentionBlock configured_block(const std::string& name, int64_t channels, const std::vector<std::string>& own) {
  if (own.empty()) return build_block(name, channels);
  const Config config = Config::from_string("type: " + name, "--set", own);
  return configure_block(config.root(), channels).build();
}
}  // namespace

BenchReport bench_blocks(const BenchSettings& s, const Runtime& runtime) {
  BenchReport report;
  report.settings = s;
  report.runtime = runtime;
  std::vector<BenchSubject> subjects;
  if (!s.model.empty()) {
    const Experiment x = read_experiment(Config::load(s.model));
    subjects.push_back(model_subject(std::filesystem::path(s.model).stem().string(), build_model(x, runtime)));
  } else {
    const std::map<std::string, std::vector<std::string>> set = options_by_block(s);
    for (const std::string& name : s.blocks) {
      const std::string refusal = runtime_refusal(find_block(name), runtime);
      if (!refusal.empty()) {
        report.refused.push_back(refusal);
        continue;
      }
      const auto own = set.find(name);
      subjects.push_back(block_subject(
          name, configured_block(name, s.channels, own == set.end() ? std::vector<std::string>{} : own->second),
          s.channels));
    }
    if (subjects.empty()) throw Error(report.refused.front());
  }
  const int64_t free_bytes = s.max_memory_bytes > 0 ? s.max_memory_bytes : free_memory_bytes(runtime);
  const std::string limit_text = "the " + gigabytes(static_cast<double>(free_bytes)) +
                                 (s.max_memory_bytes > 0 ? " --max-memory allows" : " free on " + runtime.device.str());
  // Memory grows with the token count, so the size with the most tokens is the one to check.
  const auto largest = std::max_element(s.sizes.begin(), s.sizes.end(), [](const auto& a, const auto& b) {
    return a[0] * a[1] < b[0] * b[1];
  });
  std::vector<BenchSubject> fitting;
  for (const BenchSubject& subject : subjects) {
    subject.module->to(runtime.device);
    std::string refusal;
    if (free_bytes > 0 && largest != s.sizes.end()) {
      const auto& size = *largest;
      const PeakEstimate e = estimate_peak(subject, s.batch, size, s.backward, runtime, static_cast<double>(free_bytes));
      if (!e.measured.empty() && e.bytes > static_cast<double>(free_bytes)) {
        char growth[64];
        std::snprintf(growth, sizeof(growth), "N^%.2f", e.exponent);
        refusal = subject.name + " at " + std::to_string(size[0]) + "x" + std::to_string(size[1]) +
                  ": estimated peak memory " + gigabytes(e.bytes) + " (measured at " +
                  std::to_string(e.measured.front()[0]) + "x" + std::to_string(e.measured.front()[1]) + " to " +
                  std::to_string(e.measured.back()[0]) + "x" + std::to_string(e.measured.back()[1]) +
                  ", growing as " + growth + ") exceeds " + limit_text;
      }
    }
    if (refusal.empty()) {
      fitting.push_back(subject);
    } else {
      report.refused.push_back(refusal);
    }
  }
  if (fitting.empty()) throw Error(report.refused.back());
  if (s.floor) report.ceilings = measure_ceilings(runtime);
  for (const BenchSubject& subject : fitting) {
    BlockResult result;
    result.block = subject.name;
    result.parameters = count_parameters(*subject.module);
    std::vector<double> tokens, times, bytes;
    for (const auto& size : s.sizes) {
      const std::string where = subject.name + " at " + std::to_string(size[0]) + "x" + std::to_string(size[1]);
      at::manual_seed(0);
      const at::Tensor x = random_input(subject, s.batch, size, runtime);
      try {
        result.sizes.push_back(bench_input(subject, x, s.warmup, s.iters, s.backward, runtime));
      } catch (const c10::Error& e) {
        throw Error(where + ": " + one_line(e.what_without_backtrace()));
      } catch (const Error& e) {
        throw Error(where + ": " + e.what());
      }
      if (s.floor) {
        SizeResult& z = result.sizes.back();
        z.min_bytes =
            minimum_bytes(z.output_is_input ? 0 : x.numel(), z.output_elements, result.parameters, runtime.precision);
        z.floor = floor_of(z.macs, z.min_bytes, report.ceilings);
      }
      tokens.push_back(static_cast<double>(size[0] * size[1]));
      times.push_back(result.sizes.back().median_ms);
      bytes.push_back(static_cast<double>(result.sizes.back().peak_bytes));
      spdlog::debug("bench {}: {:.2f} ms", where, times.back());
    }
    result.time_exponent = growth_exponent(tokens, times);
    result.memory_exponent = growth_exponent(tokens, bytes);
    if (s.erf && s.model.empty() && !s.sizes.empty()) {
      auto* block = dynamic_cast<AttentionBlockImpl*>(subject.module.get());
      if (block) {
        at::manual_seed(1);
        const auto& size = s.sizes.front();
        std::vector<at::Tensor> inputs;
        for (int k = 0; k < 2; ++k) {
          inputs.push_back(at::randn({1, subject.in_channels, size[0], size[1]}).to(runtime.device));
        }
        block->eval();
        result.erf = effective_receptive_field(*block, inputs);
      }
    }
    report.blocks.push_back(result);
  }
  return report;
}

namespace {
double megabytes(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

std::string exponent_text(double k) {
  char text[32];
  std::snprintf(text, sizeof(text), "%5.2f", k);
  return std::isnan(k) ? std::string("    -") : std::string(text);
}

nlohmann::json exponent_json(double k) { return std::isnan(k) ? nlohmann::json() : nlohmann::json(k); }
}  // namespace

// median / floor; NaN where the floor is 0 (a subject that moves and computes nothing).
double floor_ratio(const SizeResult& z) {
  return z.floor.ms > 0 ? z.median_ms / z.floor.ms : std::numeric_limits<double>::quiet_NaN();
}

std::string format_bench(const BenchReport& r) {
  const BenchSettings& s = r.settings;
  std::string out;
  char line[512];
  const std::string subject = s.model.empty() ? "blocks alone on [" + std::to_string(s.batch) + ", " +
                                                    std::to_string(s.channels) + ", H, W]"
                                              : "model " + s.model + " on [" + std::to_string(s.batch) +
                                                    ", 3, H, W] images";
  std::snprintf(line, sizeof(line), "%s, %s %s, %d threads, median of %lld runs after %lld warm-up\n",
                subject.c_str(), r.runtime.device.str().c_str(), precision_name(r.runtime.precision),
                r.runtime.threads, static_cast<long long>(s.iters), static_cast<long long>(s.warmup));
  out += line;
  out += "MB: peak tensor memory allocated during one forward";
  out += s.backward ? "; fwd+bwd: sum of the output backpropagated in training mode\n" : "\n";
  if (s.floor) {
    const Ceilings& c = r.ceilings;
    std::snprintf(line, sizeof(line),
                  "floor ms: the larger of 2 x GMAC at %.4g TFLOP/s (n=%lld %s %s) and the input, output and weights "
                  "moved once at %.4g GB/s (a %lld MB copy), m where memory decides; x floor: median / floor\n",
                  c.matrix_flops_per_s / 1e12, static_cast<long long>(c.matrix_n), precision_name(r.runtime.precision),
                  c.matrix_how.c_str(), c.copy_bytes_per_s / 1e9,
                  static_cast<long long>(c.copy_bytes >> 20));
    out += line;
  }
  int name_width = 14;
  for (const auto& b : r.blocks) name_width = std::max(name_width, static_cast<int>(b.block.size()));
  const std::string first_column = s.model.empty() ? "block" : "model";
  out += first_column + std::string(name_width - first_column.size(), ' ') + "    params";
  for (const auto& size : s.sizes) {
    const std::string hw = std::to_string(size[0]) + "x" + std::to_string(size[1]);
    std::snprintf(line, sizeof(line), " | %13s  %11s %-15s %9s %8s", (hw + " GMAC").c_str(), (hw + " ms").c_str(),
                  "(p25-p75)", "img/s", "MB");
    out += line;
    if (s.backward) {
      std::snprintf(line, sizeof(line), " %11s %11s", "fwd+bwd ms", "fwd+bwd MB");
      out += line;
    }
    if (s.floor) {
      std::snprintf(line, sizeof(line), " %10s %8s", "floor ms", "x floor");
      out += line;
    }
  }
  out += " | time ~ N^k  mem ~ N^k";
  if (s.erf && s.model.empty() && !s.sizes.empty()) {
    out += "  ERF % at " + std::to_string(s.sizes.front()[0]) + "x" + std::to_string(s.sizes.front()[1]);
  }
  out += "\n";
  for (const auto& b : r.blocks) {
    std::snprintf(line, sizeof(line), "%-*s %8.3fM", name_width, b.block.c_str(), b.parameters / 1e6);
    out += line;
    for (const auto& z : b.sizes) {
      char spread[64];
      std::snprintf(spread, sizeof(spread), "(%.1f-%.1f)", z.p25_ms, z.p75_ms);
      std::snprintf(line, sizeof(line), " | %13.3f  %11.2f %-15s %9.1f %8.2f", z.macs / 1e9, z.median_ms, spread,
                    z.images_per_s, megabytes(z.peak_bytes));
      out += line;
      if (s.backward) {
        std::snprintf(line, sizeof(line), " %11.2f %11.2f", z.train_median_ms, megabytes(z.train_peak_bytes));
        out += line;
      }
      if (s.floor) {
        std::snprintf(line, sizeof(line), " %9.3f%c", z.floor.ms, z.floor.memory_bound ? 'm' : ' ');
        out += line;
        if (std::isnan(floor_ratio(z))) {
          std::snprintf(line, sizeof(line), " %8s", "-");
        } else {
          std::snprintf(line, sizeof(line), " %8.1f", floor_ratio(z));
        }
        out += line;
      }
    }
    out += " |      " + exponent_text(b.time_exponent) + "      " + exponent_text(b.memory_exponent);
    if (!std::isnan(b.erf)) {
      std::snprintf(line, sizeof(line), "  %8.1f", 100 * b.erf);
      out += line;
    }
    out += b.sizes.size() < 2 ? "  (one size)\n" : "\n";
  }
  for (const auto& why : r.refused) out += "not run: " + why + "\n";
  return out;
}

nlohmann::json bench_json(const BenchReport& r) {
  nlohmann::json blocks = nlohmann::json::array();
  for (const auto& b : r.blocks) {
    nlohmann::json sizes = nlohmann::json::array();
    for (const auto& s : b.sizes) {
      nlohmann::json entry = {{"height", s.size[0]},      {"width", s.size[1]},   {"macs", s.macs},
                              {"median_ms", s.median_ms}, {"p25_ms", s.p25_ms},   {"p75_ms", s.p75_ms},
                              {"images_per_s", s.images_per_s}, {"peak_bytes", s.peak_bytes}};
      if (r.settings.backward) {
        entry["train_median_ms"] = s.train_median_ms;
        entry["train_p25_ms"] = s.train_p25_ms;
        entry["train_p75_ms"] = s.train_p75_ms;
        entry["train_peak_bytes"] = s.train_peak_bytes;
      }
      if (r.settings.floor) {
        entry["min_bytes"] = s.min_bytes;
        entry["floor_ms"] = s.floor.ms;
        entry["floor_bound"] = s.floor.memory_bound ? "memory" : "arithmetic";
        entry["floor_ratio"] = exponent_json(floor_ratio(s));
      }
      sizes.push_back(entry);
    }
    blocks.push_back({{"block", b.block}, {"parameters", b.parameters}, {"sizes", sizes},
                      {"time_exponent", exponent_json(b.time_exponent)},
                      {"memory_exponent", exponent_json(b.memory_exponent)},
                      {"erf", exponent_json(b.erf)}});
  }
  nlohmann::json out = {{"channels", r.settings.model.empty() ? r.settings.channels : 3},
                        {"batch", r.settings.batch},
                        {"device", r.runtime.device.str()},
                        {"precision", precision_name(r.runtime.precision)},
                        {"threads", r.runtime.threads},
                        {"warmup", r.settings.warmup},
                        {"iters", r.settings.iters},     {"backward", r.settings.backward},
                        {"blocks", blocks}};
  if (!r.settings.model.empty()) out["model"] = r.settings.model;
  if (!r.refused.empty()) out["refused"] = r.refused;
  if (r.settings.floor) {
    out["ceilings"] = {{"matrix_flops_per_s", r.ceilings.matrix_flops_per_s},
                       {"matrix_n", r.ceilings.matrix_n},
                       {"matrix_how", r.ceilings.matrix_how},
                       {"copy_bytes_per_s", r.ceilings.copy_bytes_per_s},
                       {"copy_bytes", r.ceilings.copy_bytes}};
  }
  return out;
}

std::string bench_csv(const BenchReport& r) {
  std::string out =
      "block,parameters,batch,channels,height,width,tokens,macs,median_ms,p25_ms,p75_ms,images_per_s,peak_bytes,"
      "train_median_ms,train_p25_ms,train_p75_ms,train_peak_bytes,time_exponent,memory_exponent,erf";
  // The floor's columns only when it was measured: a table without them reads as before.
  out += r.settings.floor ? ",min_bytes,floor_ms,floor_ratio,floor_bound\n" : "\n";
  const int64_t channels = r.settings.model.empty() ? r.settings.channels : 3;
  char line[512];
  for (const auto& b : r.blocks) {
    for (const auto& s : b.sizes) {
      std::snprintf(line, sizeof(line), "%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%.4f,%.4f,%.4f,%.3f,%lld,",
                    b.block.c_str(), static_cast<long long>(b.parameters), static_cast<long long>(r.settings.batch),
                    static_cast<long long>(channels), static_cast<long long>(s.size[0]),
                    static_cast<long long>(s.size[1]), static_cast<long long>(s.size[0] * s.size[1]),
                    static_cast<long long>(s.macs), s.median_ms, s.p25_ms, s.p75_ms, s.images_per_s,
                    static_cast<long long>(s.peak_bytes));
      out += line;
      if (r.settings.backward) {
        std::snprintf(line, sizeof(line), "%.4f,%.4f,%.4f,%lld,", s.train_median_ms, s.train_p25_ms,
                      s.train_p75_ms, static_cast<long long>(s.train_peak_bytes));
        out += line;
      } else {
        out += ",,,,";
      }
      auto number = [](double k) { return std::isnan(k) ? std::string() : fmt::format("{:.4f}", k); };
      out += number(b.time_exponent) + "," + number(b.memory_exponent) + "," + number(b.erf);
      if (r.settings.floor) {
        out += fmt::format(",{},{:.6f},{},{}", s.min_bytes, s.floor.ms, number(floor_ratio(s)),
                           s.floor.memory_bound ? "memory" : "arithmetic");
      }
      out += "\n";
    }
  }
  return out;
}

}  // namespace attnseg
