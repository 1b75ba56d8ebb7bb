// The training loop: SGD with momentum and weight decay, poly learning rate with linear
// warm-up, cross-entropy with the ignore index, atomic checkpoints every K iterations and
// at the end, metrics as JSON lines in the work directory, resumable.
#pragma once

#include <filesystem>

#include "config/config.h"

namespace attnseg {

struct TrainResult {
  int64_t iterations = 0;
  double final_loss = 0;
  std::filesystem::path checkpoint;
  double images_per_second = 0;
  double data_wait_fraction = 0;  // share of the loop spent waiting for the loader
  int threads = 0;
};

// Trains as `config` says, writing into `work_dir`. With `resume`, continues from the
// checkpoint named in work_dir/last_checkpoint. A non-finite loss stops the run with an
// error and leaves the last good checkpoint in place.
TrainResult train(const Config& config, const std::filesystem::path& work_dir, bool resume);

// The checkpoint a resumed run would start from (empty when there is none).
std::filesystem::path latest_checkpoint(const std::filesystem::path& work_dir);

}  // namespace attnseg
