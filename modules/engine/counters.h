// Measured, not estimated: the peak of tensor memory allocated while a scope runs, and the
// multiply-adds of the convolutions and matrix products a scope executes.
//
// PeakMemory hooks LibTorch's allocators through the memory-reporting slot the profiler uses
// (c10::MemoryReportingInfoBase): the CPU allocator and the CUDA caching allocator report
// every allocation and free to it, so the peak is that of bytes allocated by tensors on the
// thread that opened the scope (autograd's CPU backward runs there too). Memory held before
// the scope (weights, the input) is not counted; BLAS work buffers are not tensors and are
// not counted either.
//
// MacCounter observes every operator call through a thread-local RecordFunction callback and
// adds the multiply-adds of aten::convolution (N·Cout·Hout·Wout·Cin/groups·kh·kw), mm, bmm,
// addmm and baddbmm from their input shapes; a product inside a counted operator (a
// convolution lowered to a matrix product) is not counted again. Element-wise work
// (softmax, additions, normalisation) is not counted, as in mmsegmentation's FLOPs counter.
#pragma once

#include <c10/util/ThreadLocalDebugInfo.h>

#include <cstdint>
#include <memory>

namespace attnseg {

class PeakMemory {
 public:
  PeakMemory();
  ~PeakMemory();
  PeakMemory(const PeakMemory&) = delete;
  PeakMemory& operator=(const PeakMemory&) = delete;

  // Highest sum of bytes allocated in this scope and not yet freed, so far.
  int64_t peak_bytes() const;
  // Bytes allocated in this scope and still held now.
  int64_t current_bytes() const;

 private:
  struct Reporter;
  std::shared_ptr<Reporter> reporter_;
  std::unique_ptr<c10::DebugInfoGuard> guard_;
};

class MacCounter {
 public:
  MacCounter();
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;

  int64_t macs() const;

 private:
  uint64_t handle_ = 0;
};

}  // namespace attnseg
