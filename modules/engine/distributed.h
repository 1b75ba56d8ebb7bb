// Data-parallel training on PyTorch's own distributed engine, c10d: a process joins a group
// the way PyTorch jobs do (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, as torchrun
// or a Slurm wrapper sets them; rendezvous through c10d's TCPStore), with the Gloo process
// group on CPUs and NCCL's on GPUs (a CUDA build whose LibTorch has it). Every rank starts from
// rank 0's parameters and buffers; the gradients are averaged over the ranks in buckets whose
// all-reduce starts during the backward pass, as soon as the bucket's last gradient is ready
// (c10d's reducer does the same in DDP); the buffers a training step changes (BatchNorm
// statistics, EMA bases, routing centroids) are made rank 0's again after every step, as DDP's
// broadcast_buffers does.
//
// The c10d headers stay inside distributed.cpp: a build without them (no libgloo-dev, no
// NCCL) still compiles, and joining a group there is refused with one line.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/batch_norm.h"
#include "head/segmentor.h"

namespace attnseg {

// Where this process sits in a job, from the environment.
struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// The job this process belongs to, from RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT; nullopt when WORLD_SIZE is not set. A malformed or
// inconsistent value throws attnseg::Error naming the variable.
std::optional<DistributedEnv> distributed_env_from_environment();

// Whether this build has c10d's Gloo process group, and what a refusal says when it has not.
bool distributed_available();
inline constexpr const char* kNoGlooReason =
    "(Debian's libgloo-dev was missing when it was configured; run tools/setup.sh and build again)";

// Whether this build has c10d's NCCL process group (a CUDA build whose LibTorch has NCCL).
bool nccl_available();

// A c10d process group (Gloo, or NCCL given `nccl_gpu`) and what training asks of it. Joining
// waits up to `timeout` for every rank; a collective that waits longer (a rank that died or
// hangs) throws attnseg::Error naming the operation and this rank. With NCCL the group binds
// this rank to `nccl_gpu` (made the current CUDA device) and connects at once; it takes CPU
// tensors too, moving them through that GPU.
class ProcessGroup {
 public:
  ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds timeout,
               std::optional<c10::Device> nccl_gpu = std::nullopt);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  // In place, every rank ends with root's values.
  void broadcast(at::Tensor& tensor, int root = 0);
  // In place, every rank ends with the sum over the ranks.
  void all_reduce_sum(at::Tensor& tensor);
  // Starts an in-place sum; wait() finishes it. Collectives must be started in the same order
  // on every rank.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  std::unique_ptr<Pending> start_all_reduce_sum(at::Tensor& flat);
  // Returns once every rank has called it.
  void barrier();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The in-place sum over `group`'s ranks as training and evaluation take it; none without a group.
SumOverRanks sum_over(ProcessGroup* group);

// Runs `decide` on rank 0 alone (claiming a work directory, refusing an earlier run) and tells
// every rank whether it threw attnseg::Error: rank 0 rethrows its reason, the others throw one
// line saying that rank 0 refused, instead of failing later on the connection rank 0 closed
// (RankZeroRefused under --nproc, whose launcher reports rank 0's failure and whose console
// then shows rank 0's line alone). Without a group, `decide` runs and throws as it would.
void decide_on_rank_zero(ProcessGroup* group, int rank, const std::function<void()>& decide);
// Set in the environment of the ranks that `--nproc` starts.
constexpr const char* kLaunchedByNproc = "ATTNSEG_NPROC_RANK";

// Every parameter and buffer of `model` made rank 0's.
void broadcast_model(ProcessGroup& group, Segmentor& model);

// Averages the gradients of a model's parameters over the ranks. Parameters are grouped into
// buckets of about `bucket_bytes`, in reverse order of registration (roughly the order in
// which backward produces their gradients); a hook on each parameter copies its gradient into
// its bucket, and the bucket's all-reduce starts when its last gradient has arrived and every
// earlier bucket has started, so the ranks start them in the same order. finish(), called
// between backward and the optimizer step, starts what is left (a parameter that received no
// gradient contributes zeros), waits, and writes the averages into the parameters' .grad.
class GradientAverager {
 public:
  GradientAverager(ProcessGroup& group, Segmentor& model, int64_t bucket_bytes = 25 << 20);
  ~GradientAverager();
  void finish();
  // The buckets as lists of parameter indices (in model->parameters() order): for tests.
  std::vector<std::vector<size_t>> buckets() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// The buffers of `model` that training changes made rank 0's again: after every step.
void broadcast_buffers(ProcessGroup& group, Segmentor& model);

}  // namespace attnseg
