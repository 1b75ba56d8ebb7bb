// Data-parallel commands (`train`, `eval`, `sweep`): N local ranks started from one command line
// (--nproc), or one rank of a job its launcher describes in the environment (torchrun, Slurm:
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), on c10d's Gloo or NCCL group.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "engine/distributed.h"

namespace attnseg::app {

// What every rank would refuse alike, refused once before any starts: already inside a job,
// no process group in this build, a device or precision the machine cannot run, NCCL where the
// build lacks it. Returns whether the ranks will join NCCL's group.
bool check_local_launch(const RuntimeSettings& settings);

// Starts `nproc` copies of `argv` (less --nproc) as ranks 0..nproc-1 of a local job, as
// torchrun would, waits for them, and ends them all when one fails: one line naming the rank,
// then `after_failure`. Returns the ranks' exit code.
int launch_local_ranks(const std::string& command, int nproc, const std::vector<std::string>& argv, bool nccl,
                       const std::string& after_failure);

// A data-parallel command's batch of `batch` images split over `nproc` ranks must give each at
// least one: refused once, naming --nproc and data.batch_size (`whose`: the job's, each run's).
void check_images_per_rank(int64_t batch, int nproc, const std::string& whose);

// The runtime of this process and, in a job the environment describes, its process group:
// NCCL's for runtime.dist_backend nccl (or auto on GPUs), else Gloo's. None alone, nor in a job
// of one under dist_backend auto; a job of one with gloo or nccl named forms a group of one (the
// data-parallel path's cost over plain training). In a job rank 0 alone logs, the ranks on a
// machine share its cores (runtime.threads 0) and each rank of an NCCL job takes a GPU of its
// own. Logs the command's first line as begin_command does.
struct RankRuntime {
  Runtime runtime;
  std::unique_ptr<ProcessGroup> group;  // null outside a job
};
RankRuntime begin_rank(const std::string& command, RuntimeSettings settings);

}  // namespace attnseg::app
