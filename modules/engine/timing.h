// Wall-clock timing of a callable: warm-up runs, then the median and quartiles of the
// timed runs. The callable must force completion of its work (e.g. read one value back)
// so asynchronous devices are synchronised before the clock is read.
#pragma once

#include <functional>
#include <vector>

namespace attnseg {

struct Timing {
  double median_ms = 0, p25_ms = 0, p75_ms = 0;
};

// Linear interpolation between order statistics, q in [0, 1].
double percentile(std::vector<double> values, double q);

Timing time_runs(const std::function<void()>& run, int64_t warmup, int64_t runs);

}  // namespace attnseg
