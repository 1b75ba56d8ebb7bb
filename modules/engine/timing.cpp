#include "engine/timing.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

namespace attnseg {

double percentile(std::vector<double> v, double q) {
  if (v.empty()) throw std::invalid_argument("percentile of no values");
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

Timing time_runs(const std::function<void()>& run, int64_t warmup, int64_t runs) {
  for (int64_t i = 0; i < warmup; ++i) run();
  std::vector<double> ms;
  for (int64_t i = 0; i < std::max<int64_t>(runs, 1); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return {percentile(ms, 0.5), percentile(ms, 0.25), percentile(ms, 0.75)};
}

}  // namespace attnseg
