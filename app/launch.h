// Data-parallel commands (`train`, `eval`): N local ranks started from one command line
// (--nproc), or one rank of a job its launcher describes in the environment (torchrun, Slurm:
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), on c10d's Gloo or NCCL group.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "engine/distributed.h"

namespace attnseg::app {

// Whether a job's ranks join NCCL's process group: runtime.dist_backend nccl, or auto on GPUs
// (Gloo's otherwise). NCCL where this build lacks it, or for ranks on the CPU, is refused.
bool job_uses_nccl(const RuntimeSettings& settings, const Runtime& runtime);

// What every rank would refuse alike, refused once before any starts: already inside a job,
// no process group in this build, a device or precision the machine cannot run, NCCL where the
// build lacks it. Returns whether the ranks will join NCCL's group.
bool check_local_launch(const RuntimeSettings& settings);

// Starts `nproc` copies of `argv` (less --nproc) as ranks 0..nproc-1 of a local job, as
// torchrun would, waits for them, and ends them all when one fails: one line naming the rank,
// then `after_failure`. Returns the ranks' exit code.
int launch_local_ranks(const std::string& command, int nproc, const std::vector<std::string>& argv, bool nccl,
                       const std::string& after_failure);

// This process's part in a job the environment describes (none, or a job of one under
// runtime.dist_backend auto: nullopt; a job of one with gloo or nccl named forms a group of
// one, the data-parallel path's cost over plain training): rank 0 alone logs, the ranks on a
// machine share its cores (runtime.threads 0), each rank of an NCCL job takes a GPU of its
// own. Call before the runtime starts.
std::optional<DistributedEnv> prepare_rank(RuntimeSettings& settings);

// Joins the job's process group (NCCL's or Gloo's, as job_uses_nccl says) and numbers the
// runtime's rank and world size.
std::unique_ptr<ProcessGroup> join_job(const DistributedEnv& env, const RuntimeSettings& settings, Runtime& runtime);

}  // namespace attnseg::app
