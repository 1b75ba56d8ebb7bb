// The training loop, in the parts that precision and data-parallel training plug into: the
// training state, one step (forward under autocast, loss, backward, a hook where gradients
// are reduced, the optimizer), the checkpoint policy (when, which rank writes, how many are
// kept) and the metrics log. SGD with momentum and weight decay, poly learning rate with
// linear warm-up, cross-entropy with the ignore index; atomic checkpoints every K iterations
// and at the end; metrics as JSON lines in the work directory; resumable.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/optim/sgd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "core/batch_norm.h"
#include "core/device.h"
#include "data/loader.h"
#include "engine/experiment.h"
#include "engine/progress.h"

namespace attnseg {

class ProcessGroup;  // engine/distributed.h

// fp16 training's dynamic loss scaling, as torch.cuda.amp.GradScaler: the loss is multiplied
// by the scale before backward; before the step the gradients are divided by it, and when
// any is not finite the step is skipped and the scale halved; after `interval` finite steps
// in a row it doubles.
class LossScaler {
 public:
  explicit LossScaler(double scale = 65536.0, int64_t interval = 2000) : scale_(scale), interval_(interval) {}
  double scale() const { return scale_; }
  // Divides the gradients by the scale; true when every one is finite (reads one value back
  // from the device, as GradScaler does). Updates the scale for the next step.
  bool unscale_and_update(const std::vector<torch::Tensor>& parameters);

 private:
  double scale_;
  int64_t interval_, finite_steps_ = 0;
};

// What training carries from step to step.
struct TrainingState {
  Segmentor model{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer;
  std::optional<LossScaler> scaler;  // fp16 only
  int64_t iteration = 0;             // steps done
};

// The model of `experiment` on the runtime's device, its optimizer and (fp16) loss scaler.
TrainingState make_training_state(const Experiment& experiment, const Runtime& runtime);

// Called between backward and the optimizer step with the model whose gradients are ready:
// where data-parallel training averages them over the ranks. Nothing in a single process.
using GradientHook = std::function<void(Segmentor&)>;

// The losses of one step, detached and left on the device (reading them waits for it).
struct StepLosses {
  torch::Tensor total, decode, aux;  // aux undefined without the auxiliary head
  torch::Tensor block;               // the attention block's own loss; undefined for most blocks
};

// One optimizer step at learning rate `lr` on a batch already on the model's device: the
// forward under the runtime's autocast, the loss in float, backward (scaled for fp16), the
// hook, the step (skipped when fp16 gradients overflowed). Nothing is read back from the
// device except the loss scaler's overflow check in fp16.
// What a loss line of metrics.jsonl says about the attention block after a step: the head's
// gate and its gradient (when it has one), the RMS of the block's input and of the change the
// head makes to it in that step's forward, and the gradient norm over the block's parameters.
nlohmann::json block_stats(const Segmentor& model);

//
// In a data-parallel job, `sum_over_ranks` adds a tensor over the ranks: the cross-entropy is
// then divided by the job's labelled pixels over the number of ranks, not this rank's, so that
// averaging the ranks' gradients gives the gradient of the whole batch's mean loss however the
// ignored pixels fall between the shards.
StepLosses train_step(TrainingState& state, const Batch& batch, double lr, const Runtime& runtime,
                      const GradientHook& hook = {}, const SumOverRanks& sum_over_ranks = {});

// When checkpoints are written (every `interval` iterations and at the last), which rank
// writes them (rank 0), and how many are kept (the newest `keep`).
class CheckpointPolicy {
 public:
  CheckpointPolicy(std::filesystem::path work_dir, const TrainSettings& settings, const Runtime& runtime);
  bool due(int64_t done) const;
  // Writes iter_<done>.pt and last_checkpoint (rank 0 only), then keeps the newest `keep` of
  // all the checkpoints in the directory, including those of earlier runs resumed from. The
  // caller has checked that the state is finite.
  void save(const TrainingState& state, const std::string& config_yaml);
  // The newest complete checkpoint of this run (or the one it resumed from); empty if none.
  const std::filesystem::path& last_good() const { return last_good_; }
  void resumed_from(const std::filesystem::path& checkpoint) { last_good_ = checkpoint; }

 private:
  std::filesystem::path work_dir_;
  int64_t interval_, keep_, total_;
  bool writer_;
  std::filesystem::path last_good_;
};

// metrics.jsonl: one JSON line per logged iteration, written by rank 0. Opening it drops the
// lines after `start` (those a resumed run will write again).
class MetricsLog {
 public:
  MetricsLog(const std::filesystem::path& file, int64_t start, const Runtime& runtime);
  void write(const nlohmann::json& line);

 private:
  std::optional<AppendFile> out_;
};

struct TrainResult {
  int64_t iterations = 0;
  double final_loss = 0;
  std::filesystem::path checkpoint;
  double images_per_second = 0;
  double data_wait_fraction = 0;  // share of the loop spent waiting for the loader
  int threads = 0;
};

// Trains `experiment` (whose config is `config_yaml`, kept in the work directory and in every
// checkpoint) on the runtime, writing into `work_dir`. With `resume`, continues from the
// newest checkpoint in work_dir that loads whole; without, a work_dir that holds checkpoints
// is refused before anything is written. A non-finite loss stops the run with an error naming
// the iteration and the last good checkpoint, which is kept.
//
// With a process group (runtime.rank and runtime.world_size set from it) the run is one rank of
// a data-parallel job: every rank starts from rank 0's weights (after rank 0 has resumed, the
// others load the checkpoint it names), reads its shard of each global batch, averages
// gradients over the ranks during backward and takes rank 0's buffers after each step; the
// logged losses are the ranks' mean, images/s the job's; rank 0 alone validates and writes.
//
// With `job`, the run is one part of a longer job (a sweep's run): its progress lines say so and
// estimate the job's end.
TrainResult train(const Experiment& experiment, const std::string& config_yaml, const Runtime& runtime,
                  const std::filesystem::path& work_dir, bool resume, ProcessGroup* group = nullptr,
                  JobProgress* job = nullptr);

// Throws, naming the newest, when `work_dir` holds checkpoints: a run from iteration 0 would
// overwrite an earlier run's metrics and checkpoints, and retention would delete the rest.
void refuse_earlier_run(const std::filesystem::path& work_dir);

// The checkpoint a resumed run would start from (empty when there is none).
std::filesystem::path latest_checkpoint(const std::filesystem::path& work_dir);
// The checkpoints `iter_<N>.pt` in a work directory, newest (largest N) first.
std::vector<std::pair<int64_t, std::filesystem::path>> checkpoints_in(const std::filesystem::path& work_dir);
// Loads the newest checkpoint of `work_dir` that reads back whole into `state` (model,
// optimizer, iteration, random states), skipping and setting aside unreadable newer ones;
// returns it, or an empty path when the directory has no checkpoint. Throws attnseg::Error
// when none is readable or one belongs to another model.
std::filesystem::path resume_training(TrainingState& state, const std::filesystem::path& work_dir);

}  // namespace attnseg
