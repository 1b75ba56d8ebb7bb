// Checkpoints: model, optimizer, iteration, the config that made them and every random state
// in use (the CPU generator's and, where there are GPUs, each CUDA generator's), in one
// torch-serialized archive written atomically (temporary file, fsync, rename), so a crash
// mid-write never leaves a half checkpoint where a good one was. A checkpoint loads onto
// whatever device the model is on, whichever device wrote it.
#pragma once

#include <c10/core/Device.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>

#include <filesystem>
#include <string>

#include "core/error.h"
#include "head/segmentor.h"

namespace attnseg {

// A checkpoint that cannot be read back whole (missing, truncated, corrupt): `--resume` skips
// it for an older one, unlike a checkpoint of another model, which stops the run.
class UnreadableCheckpoint : public Error {
 public:
  using Error::Error;
};

struct CheckpointInfo {
  int64_t iteration = 0;
  std::string config_yaml;
};

void save_checkpoint(const std::filesystem::path& path, const Segmentor& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointInfo& info);

// Loads into `model` (and, with `optimizer`, the optimizer's state and the random states),
// mapping every tensor to the device of the model's parameters. Throws UnreadableCheckpoint
// naming the file when it is missing or corrupt, attnseg::Error when it was written for a
// model of another shape.
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Segmentor& model,
                               torch::optim::Optimizer* optimizer = nullptr);

// Where a checkpoint's tensors go for `model`: the device of its first parameter (the CPU
// for a model without any).
c10::Device checkpoint_map_location(const Segmentor& model);
// The checkpoint's archive with every tensor mapped to `device` (load_checkpoint reads it
// with checkpoint_map_location); throws UnreadableCheckpoint naming the file when it is
// missing or unreadable.
torch::serialize::InputArchive read_checkpoint_archive(const std::filesystem::path& path, const c10::Device& device);

}  // namespace attnseg
