// Batches for training and samples for evaluation, produced by worker threads ahead of the
// consumer. Item k is a pure function of (seed, k), so a run resumed at iteration k sees the
// same batches as an uninterrupted one, whatever thread made them.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace attnseg {

// Produces items [first, end) on `workers` threads, at most `depth` ahead of the consumer,
// and hands them out in order. A worker's exception is rethrown by next() for its item.
template <typename T>
class Prefetcher {
 public:
  Prefetcher(std::function<T(int64_t)> produce, int64_t first, int64_t end, int workers, int depth)
      : produce_(std::move(produce)), next_(first), claim_(first), end_(end),
        depth_(std::max(1, depth)) {
    for (int i = 0; i < std::max(1, workers); ++i) threads_.emplace_back([this] { work(); });
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  bool done() const { return next_ >= end_; }

  T next() {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [this] { return ready_.count(next_) > 0; });
    Slot slot = std::move(ready_.at(next_));
    ready_.erase(next_);
    ++next_;
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.unlock();
    cv_.notify_all();
    if (slot.error) std::rethrow_exception(slot.error);
    return std::move(slot.value);
  }

  // Total time next() spent waiting for a worker: the trainer's data starvation.
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Slot {
    T value{};
    std::exception_ptr error;
  };

  void work() {
    for (;;) {
      int64_t k;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || claim_ >= end_ || claim_ < next_ + depth_; });
        if (stop_ || claim_ >= end_) return;
        k = claim_++;
      }
      Slot slot;
      try {
        slot.value = produce_(k);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.emplace(k, std::move(slot));
      }
      cv_.notify_all();
    }
  }

  std::function<T(int64_t)> produce_;
  int64_t next_, claim_, end_;
  int depth_;
  bool stop_ = false;
  double wait_seconds_ = 0;
  std::map<int64_t, Slot> ready_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
};

struct Batch {
  at::Tensor images;  // [B, 3, H, W] float32, normalised
  at::Tensor labels;  // [B, H, W] int64
};

// Which dataset index fills position p of the endless training stream: a fresh permutation
// of the dataset per epoch, drawn from (seed, epoch).
size_t sample_index(size_t dataset_size, uint64_t seed, int64_t position);

// Training batch number `iteration` of a job with `world_size` ranks, as rank `rank` reads
// it: the global batch is batch_size samples through the train pipeline, each augmented with
// an Rng seeded by (seed, position), and the rank takes its contiguous share of them (sizes
// differ by at most one), so the ranks' shards together are exactly the one-process batch.
// A pure function of (seed, iteration, rank, world_size).
Batch make_train_batch(const FolderDataset& dataset, const TrainPipelineOptions& pipeline,
                       const Normalization& norm, int64_t batch_size, uint64_t seed,
                       int64_t iteration, int rank = 0, int world_size = 1);

}  // namespace attnseg
