#include "engine/bench.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "attention/registry.h"
#include "core/error.h"
#include "core/runtime.h"
#include "engine/timing.h"

namespace attnseg {

std::vector<std::array<int64_t, 2>> parse_sizes(const std::string& text) {
  std::vector<std::array<int64_t, 2>> sizes;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    long long h = 0, w = 0;
    char x = 0, rest = 0;
    if (std::sscanf(item.c_str(), "%lld%c%lld%c", &h, &x, &w, &rest) != 3 || x != 'x' || h <= 0 ||
        w <= 0) {
      throw Error("--sizes: '" + item + "' is not HEIGHTxWIDTH with positive integers (e.g. 32x64)");
    }
    sizes.push_back({h, w});
  }
  if (sizes.empty()) throw Error("--sizes: no size given (e.g. 32x64,64x128)");
  return sizes;
}

std::vector<std::string> parse_block_list(const std::string& text) {
  if (text == "all") return block_names();
  std::vector<std::string> blocks;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (item.empty()) continue;
    blocks.push_back(find_block(item, "--blocks").name);
  }
  if (blocks.empty()) throw Error("--blocks: no block named (give a list such as none,ccnet or 'all')");
  return blocks;
}

double growth_exponent(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
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

namespace {
// Forward and backward of sum(output) in training mode, the gradients of the previous run
// dropped first so that none is accumulated into; the block is back in eval mode afterwards.
Timing time_backward(AttentionBlockImpl& block, const at::Tensor& input, int64_t warmup, int64_t iters) {
  block.train();
  const at::Tensor x = input.detach().clone().requires_grad_();
  const std::vector<at::Tensor> parameters = block.parameters();
  const Timing t = time_runs(
      [&] {
        for (const auto& p : parameters) p.mutable_grad().reset();
        x.mutable_grad().reset();
        block.forward(x).sum().backward();
        (void)x.grad().view(-1)[0].item<float>();
      },
      warmup, iters);
  block.eval();
  return t;
}
}  // namespace

BenchReport bench_blocks(const BenchSettings& s) {
  BenchReport report;
  report.settings = s;
  report.threads = set_threads(s.threads);
  const at::Device device(s.device);
  for (const std::string& name : s.blocks) {
    const AttentionBlock block = build_block(name, s.channels);
    block->to(device);
    block->eval();
    BlockResult result;
    result.block = name;
    result.parameters = count_parameters(*block);
    std::vector<double> tokens, times;
    for (const auto& size : s.sizes) {
      at::manual_seed(0);
      const at::Tensor x = at::randn({s.batch, s.channels, size[0], size[1]}).to(device);
      const Timing t = [&] {
        c10::InferenceMode guard;
        return time_runs([&] { (void)block->forward(x).sum().item<float>(); }, s.warmup, s.iters);
      }();
      SizeResult r{size, block->macs({s.batch, s.channels, size[0], size[1]}), t.median_ms, t.p25_ms, t.p75_ms};
      r.images_per_s = 1000.0 * static_cast<double>(s.batch) / t.median_ms;
      if (s.backward) {
        const Timing train = time_backward(*block, x, s.warmup, s.iters);
        r.train_median_ms = train.median_ms;
        r.train_p25_ms = train.p25_ms;
        r.train_p75_ms = train.p75_ms;
      }
      result.sizes.push_back(r);
      tokens.push_back(static_cast<double>(size[0] * size[1]));
      times.push_back(t.median_ms);
      spdlog::debug("bench {} {}x{}: {:.2f} ms", name, size[0], size[1], t.median_ms);
    }
    result.time_exponent = growth_exponent(tokens, times);
    report.blocks.push_back(result);
  }
  return report;
}

std::string format_bench(const BenchReport& r) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line),
                "blocks alone on [%lld, %lld, H, W], %s, %d threads, median of %lld runs after %lld warm-up%s\n",
                static_cast<long long>(r.settings.batch), static_cast<long long>(r.settings.channels),
                r.settings.device.c_str(), r.threads, static_cast<long long>(r.settings.iters),
                static_cast<long long>(r.settings.warmup),
                r.settings.backward ? "; fwd+bwd: sum of the output backpropagated in training mode" : "");
  out += line;
  out += "block           params";
  for (const auto& size : r.settings.sizes) {
    const std::string s = std::to_string(size[0]) + "x" + std::to_string(size[1]);
    std::snprintf(line, sizeof(line), " | %13s  %11s %-15s %9s", (s + " GMAC").c_str(), (s + " ms").c_str(),
                  "(p25-p75)", "img/s");
    out += line;
    if (r.settings.backward) {
      std::snprintf(line, sizeof(line), " %13s", "fwd+bwd ms");
      out += line;
    }
  }
  out += " | time ~ N^k\n";
  for (const auto& b : r.blocks) {
    std::snprintf(line, sizeof(line), "%-14s %6.3fM", b.block.c_str(), b.parameters / 1e6);
    out += line;
    for (const auto& s : b.sizes) {
      char spread[64];
      std::snprintf(spread, sizeof(spread), "(%.1f-%.1f)", s.p25_ms, s.p75_ms);
      std::snprintf(line, sizeof(line), " | %13.3f  %11.2f %-15s %9.1f", s.macs / 1e9, s.median_ms, spread,
                    s.images_per_s);
      out += line;
      if (r.settings.backward) {
        std::snprintf(line, sizeof(line), " %13.2f", s.train_median_ms);
        out += line;
      }
    }
    if (std::isnan(b.time_exponent)) {
      std::snprintf(line, sizeof(line), " |     -  (one size)\n");
    } else {
      std::snprintf(line, sizeof(line), " | %5.2f\n", b.time_exponent);
    }
    out += line;
  }
  return out;
}

nlohmann::json bench_json(const BenchReport& r) {
  nlohmann::json blocks = nlohmann::json::array();
  for (const auto& b : r.blocks) {
    nlohmann::json sizes = nlohmann::json::array();
    for (const auto& s : b.sizes) {
      nlohmann::json entry = {{"height", s.size[0]}, {"width", s.size[1]}, {"macs", s.macs},
                              {"median_ms", s.median_ms}, {"p25_ms", s.p25_ms}, {"p75_ms", s.p75_ms},
                              {"images_per_s", s.images_per_s}};
      if (r.settings.backward) {
        entry["train_median_ms"] = s.train_median_ms;
        entry["train_p25_ms"] = s.train_p25_ms;
        entry["train_p75_ms"] = s.train_p75_ms;
      }
      sizes.push_back(entry);
    }
    nlohmann::json exponent = std::isnan(b.time_exponent) ? nlohmann::json() : nlohmann::json(b.time_exponent);
    blocks.push_back({{"block", b.block}, {"parameters", b.parameters}, {"sizes", sizes},
                      {"time_exponent", exponent}});
  }
  return {{"channels", r.settings.channels}, {"batch", r.settings.batch}, {"device", r.settings.device},
          {"threads", r.threads}, {"warmup", r.settings.warmup}, {"iters", r.settings.iters},
          {"backward", r.settings.backward}, {"blocks", blocks}};
}

std::string bench_csv(const BenchReport& r) {
  std::string out =
      "block,parameters,batch,channels,height,width,tokens,macs,median_ms,p25_ms,p75_ms,images_per_s,"
      "train_median_ms,train_p25_ms,train_p75_ms,time_exponent\n";
  char line[512];
  for (const auto& b : r.blocks) {
    for (const auto& s : b.sizes) {
      std::snprintf(line, sizeof(line), "%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%.4f,%.4f,%.4f,%.3f,", b.block.c_str(),
                    static_cast<long long>(b.parameters), static_cast<long long>(r.settings.batch),
                    static_cast<long long>(r.settings.channels), static_cast<long long>(s.size[0]),
                    static_cast<long long>(s.size[1]), static_cast<long long>(s.size[0] * s.size[1]),
                    static_cast<long long>(s.macs), s.median_ms, s.p25_ms, s.p75_ms, s.images_per_s);
      out += line;
      if (r.settings.backward) {
        std::snprintf(line, sizeof(line), "%.4f,%.4f,%.4f,", s.train_median_ms, s.train_p25_ms, s.train_p75_ms);
        out += line;
      } else {
        out += ",,,";
      }
      if (!std::isnan(b.time_exponent)) {
        std::snprintf(line, sizeof(line), "%.4f", b.time_exponent);
        out += line;
      }
      out += "\n";
    }
  }
  return out;
}

}  // namespace attnseg
