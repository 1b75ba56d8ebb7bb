#include "engine/counters.h"

#include <ATen/core/ivalue.h>
#include <ATen/record_function.h>
#include <c10/core/Allocator.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/error.h"

namespace attnseg {

// The allocators call reportMemoryUsage with +size on allocation and −size on free. Only
// blocks allocated inside the scope are counted, so a stale report about a block from before
// the scope cannot pull the running sum below what the scope holds.
struct PeakMemory::Reporter : public c10::MemoryReportingInfoBase {
  mutable std::mutex mutex;
  std::unordered_map<void*, int64_t> live;
  int64_t current = 0, peak = 0;

  void record(void* ptr, int64_t size) {
    std::lock_guard<std::mutex> lock(mutex);
    if (size >= 0) {
      live[ptr] = size;
      current += size;
      peak = std::max(peak, current);
    } else if (auto it = live.find(ptr); it != live.end()) {
      current -= it->second;
      live.erase(it);
    }
  }
  // LibTorch 1.x declares the totals int64_t, 2.x size_t: one of these two overrides the
  // base's pure virtual, the other is a plain overload.
  void reportMemoryUsage(void* ptr, int64_t size, int64_t, int64_t, c10::Device) { record(ptr, size); }
  void reportMemoryUsage(void* ptr, int64_t size, size_t, size_t, c10::Device) { record(ptr, size); }
  bool memoryProfilingEnabled() const override { return true; }
};

PeakMemory::PeakMemory()
    : reporter_(std::make_shared<Reporter>()),
      guard_(std::make_unique<c10::DebugInfoGuard>(c10::DebugInfoKind::PROFILER_STATE, reporter_)) {}

PeakMemory::~PeakMemory() = default;

int64_t PeakMemory::peak_bytes() const {
  std::lock_guard<std::mutex> lock(reporter_->mutex);
  return reporter_->peak;
}

int64_t PeakMemory::current_bytes() const {
  std::lock_guard<std::mutex> lock(reporter_->mutex);
  return reporter_->current;
}

namespace {

struct CounterState {
  bool active = false;
  int64_t macs = 0;
  int depth = 0;  // counted operators open on this thread
};
thread_local CounterState counter;

int64_t product(c10::IntArrayRef v, size_t from = 0) {
  int64_t p = 1;
  for (size_t i = from; i < v.size(); ++i) p *= v[i];
  return p;
}

// Multiply-adds of one call of a counted operator, or -1 when `name` is not counted.
int64_t operator_macs(const char* name, c10::ArrayRef<const c10::IValue> in) {
  auto sizes = [&](size_t i) { return in.at(i).toTensor().sizes(); };
  if (std::strcmp(name, "aten::convolution") == 0) {
    // (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    const auto x = sizes(0), w = sizes(1);
    const auto stride = in.at(3).toIntVector(), padding = in.at(4).toIntVector(), dilation = in.at(5).toIntVector();
    const bool transposed = in.at(6).toBool();
    const int64_t groups = in.at(8).toInt();
    const int64_t kernel = product(w, 2);
    if (transposed) {  // every input element meets Cout/groups · k weights
      return product(x) * w[1] * kernel;
    }
    // One value may stand for every spatial dimension (conv2d(x, w, b, 2) gives stride [2]).
    auto at = [](const std::vector<int64_t>& v, size_t k) { return v.size() == 1 ? v[0] : v.at(k); };
    int64_t out = x[0] * w[0];
    for (size_t d = 2; d < x.size(); ++d) {
      const size_t k = d - 2;
      out *= (x[d] + 2 * at(padding, k) - at(dilation, k) * (w[d] - 1) - 1) / std::max<int64_t>(at(stride, k), 1) + 1;
    }
    return out * (x[1] / groups) * kernel;
  }
  if (std::strcmp(name, "aten::mm") == 0) return sizes(0)[0] * sizes(0)[1] * sizes(1)[1];
  if (std::strcmp(name, "aten::addmm") == 0) return sizes(1)[0] * sizes(1)[1] * sizes(2)[1];
  if (std::strcmp(name, "aten::bmm") == 0) return product(sizes(0)) * sizes(1)[2];
  if (std::strcmp(name, "aten::baddbmm") == 0) return product(sizes(1)) * sizes(2)[2];
  return -1;
}

// The start callback hands a marker to the end callback of every counted operator, so the
// nesting depth is kept without naming the operators a second time.
struct Counted : at::ObserverContext {};

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (!counter.active) return nullptr;
  const int64_t macs = operator_macs(fn.name(), fn.inputs());
  if (macs < 0) return nullptr;
  if (counter.depth++ == 0) counter.macs += macs;
  return std::make_unique<Counted>();
}

void on_end(const at::RecordFunction&, at::ObserverContext* context) {
  if (counter.active && context != nullptr) --counter.depth;
}

}  // namespace

MacCounter::MacCounter() {
  if (counter.active) throw Error("MacCounter: one counter at a time per thread");
  counter = CounterState{true, 0, 0};
  handle_ = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_start, on_end).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
}

MacCounter::~MacCounter() {
  at::removeCallback(handle_);
  counter.active = false;
}

int64_t MacCounter::macs() const { return counter.macs; }

}  // namespace attnseg
