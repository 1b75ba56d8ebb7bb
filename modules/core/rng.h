// A small deterministic random source (SplitMix64) whose stream depends only on its seed, so
// that a sample's augmentation and the synthetic dataset are the same on every platform and
// every run, whatever thread produces them.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace attnseg {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // Seeds from several values (seed, epoch, index, ...) mixed together.
  Rng(std::initializer_list<uint64_t> parts) : state_(0x9E3779B97F4A7C15ull) {
    for (uint64_t p : parts) state_ = mix(state_ ^ mix(p + 0x632BE59BD9B4E019ull));
  }
  uint64_t next() { return mix(state_ += 0x9E3779B97F4A7C15ull); }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi].
  int64_t integer(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool chance(double p) { return uniform() < p; }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

}  // namespace attnseg
