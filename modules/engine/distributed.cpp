#include "engine/distributed.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/error.h"

#ifdef ATTNSEG_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef ATTNSEG_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace attnseg {

namespace {

// A whole non-negative number from an environment variable; nullopt when it is not set.
std::optional<int> env_int(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || errno != 0 || value < 0 || value > 1 << 20) {
    throw Error(std::string("environment variable ") + name + " must be a non-negative whole number, got '" + text +
                "'");
  }
  return static_cast<int>(value);
}

// The tensors of one dtype and device laid end to end, and back.
at::Tensor flatten(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const at::Tensor& t : tensors) flat.push_back(t.detach().reshape({-1}));
  return at::cat(flat);
}

void unflatten_into(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (const at::Tensor& t : tensors) {
    t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
    offset += t.numel();
  }
}

// Runs `op` over groups of tensors that share a dtype and device, each group as one flat tensor.
template <typename Op>
void by_dtype(const std::vector<at::Tensor>& tensors, Op&& op) {
  std::vector<std::vector<at::Tensor>> groups;
  for (const at::Tensor& t : tensors) {
    if (t.numel() == 0) continue;
    auto same = std::find_if(groups.begin(), groups.end(), [&](const std::vector<at::Tensor>& g) {
      return g[0].scalar_type() == t.scalar_type() && g[0].device() == t.device();
    });
    if (same == groups.end()) {
      groups.push_back({t});
    } else {
      same->push_back(t);
    }
  }
  for (const auto& group : groups) {
    at::Tensor flat = flatten(group);
    op(flat);
    unflatten_into(flat, group);
  }
}

}  // namespace

std::optional<DistributedEnv> distributed_env_from_environment() {
  const std::optional<int> world = env_int("WORLD_SIZE");
  if (!world) return std::nullopt;
  DistributedEnv env;
  env.world_size = *world;
  if (env.world_size < 1) throw Error("environment variable WORLD_SIZE must be at least 1, got 0");
  const std::optional<int> rank = env_int("RANK");
  if (!rank) throw Error("environment variable RANK is not set, but WORLD_SIZE is (" + std::to_string(*world) + ")");
  env.rank = *rank;
  if (env.rank >= env.world_size) {
    throw Error("environment variable RANK (" + std::to_string(env.rank) + ") must be below WORLD_SIZE (" +
                std::to_string(env.world_size) + ")");
  }
  env.local_rank = env_int("LOCAL_RANK").value_or(env.rank);
  env.local_world_size = env_int("LOCAL_WORLD_SIZE").value_or(env.world_size);
  if (env.local_rank >= env.local_world_size) {
    throw Error("environment variable LOCAL_RANK (" + std::to_string(env.local_rank) +
                ") must be below LOCAL_WORLD_SIZE (" + std::to_string(env.local_world_size) + ")");
  }
  if (const char* addr = std::getenv("MASTER_ADDR")) {
    if (*addr == '\0') throw Error("environment variable MASTER_ADDR is empty");
    env.master_addr = addr;
  }
  if (const std::optional<int> port = env_int("MASTER_PORT")) {
    if (*port < 1 || *port > 65535) {
      throw Error("environment variable MASTER_PORT must be a port number (1-65535), got " + std::to_string(*port));
    }
    env.master_port = *port;
  }
  return env;
}

#if defined(ATTNSEG_WITH_GLOO) || defined(ATTNSEG_WITH_NCCL)

#ifdef ATTNSEG_WITH_GLOO
bool distributed_available() { return true; }
#else
bool distributed_available() { return false; }
#endif

#ifdef ATTNSEG_WITH_NCCL
bool nccl_available() { return true; }
#else
bool nccl_available() { return false; }
#endif

namespace {
#ifdef ATTNSEG_WITH_NCCL
// Only a LibTorch 2.x has NCCL here, where Gloo's and NCCL's process groups are both c10d
// backends; LibTorch 1.13's Gloo group is a c10d::ProcessGroup.
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroupGloo;
#endif
}  // namespace

struct ProcessGroup::Impl {
  DistributedEnv env;
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> group;

  // Waits for a collective; a rank that died or hangs surfaces here as a timeout or a closed
  // connection: one line naming the operation and this rank.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const {
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": " + what +
                  " failed (another rank died, hung or timed out after " + std::to_string(timeout.count() / 1000) +
                  " s): " + one_line(e.what()));
    }
  }

#ifdef ATTNSEG_WITH_NCCL
  // NCCL's group: this rank's GPU. NCCL moves CUDA tensors only, so a CPU tensor (the logged
  // losses, the checkpoint rank 0 picked, a confusion matrix) goes there and comes back.
  std::optional<c10::Device> gpu;
  at::Tensor staged(const at::Tensor& t) const { return gpu && !t.is_cuda() ? t.to(*gpu) : t; }
  void unstage(const at::Tensor& moved, at::Tensor& t) const {
    if (moved.is_same(t)) return;
    torch::NoGradGuard no_grad;
    t.copy_(moved);
  }

  // NCCL's communicator goes with abort(), as ProcessGroupNCCL's own destructor would do after
  // warning that destroy_process_group() was not called; abort() cannot hang on a rank that died.
  ~Impl() {
    if (!gpu || !group) return;
    try {
      static_cast<c10d::ProcessGroupNCCL*>(group.get())->abort();
    } catch (const std::exception&) {
    }
  }
#else
  const at::Tensor& staged(const at::Tensor& t) const { return t; }
  void unstage(const at::Tensor&, at::Tensor&) const {}
#endif
};

ProcessGroup::ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds timeout,
                           std::optional<c10::Device> nccl_gpu)
    : impl_(std::make_unique<Impl>()) {
  impl_->env = env;
  impl_->timeout = timeout;
  const std::string where = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);
#ifndef ATTNSEG_WITH_NCCL
  if (nccl_gpu) throw Error(where + ": this build has no NCCL process group; set runtime.dist_backend=gloo");
#endif
#ifndef ATTNSEG_WITH_GLOO
  if (!nccl_gpu) {
    throw Error(where + ": this build has no Gloo process group " + kNoGlooReason +
                "; a job on GPUs can use runtime.dist_backend=nccl");
  }
#endif
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    options.isServer = env.rank == 0;
    options.numWorkers = env.world_size;
    options.waitWorkers = true;
    options.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  } catch (const std::exception& e) {
    throw Error(where + ": the rendezvous at MASTER_ADDR=" + env.master_addr + " MASTER_PORT=" +
                std::to_string(env.master_port) + " failed: " + one_line(e.what()));
  }
#ifdef ATTNSEG_WITH_NCCL
  if (nccl_gpu) {
    const c10::Device gpu(c10::kCUDA, nccl_gpu->has_index() ? nccl_gpu->index() : 0);
    // The options below hold NCCL's ncclConfig_t, which grows with NCCL's versions: compiled with
    // an nccl.h older than the NCCL that LibTorch runs, this file would give them too little memory.
    const std::string running = c10d::getNcclVersion();
    int major = 0, minor = 0;
    if (std::sscanf(running.c_str(), "%d.%d", &major, &minor) == 2 &&
        std::make_pair(NCCL_MAJOR, NCCL_MINOR) < std::make_pair(major, minor)) {
      throw Error(where + ": attnseg was compiled with the nccl.h of NCCL " + std::to_string(NCCL_MAJOR) + "." +
                  std::to_string(NCCL_MINOR) + ", older than the NCCL " + running +
                  " that LibTorch runs; configure again with -DATTNSEG_NCCL_INCLUDE_DIR=<its include folder>");
    }
    impl_->gpu = gpu;
    try {
      // The rank's GPU becomes the current CUDA device: what LibTorch and NCCL then create
      // without naming a device (a context, streams, NCCL's buffers) goes there, not to GPU 0.
      c10::cuda::set_device(gpu.index());
      auto options = c10d::ProcessGroupNCCL::Options::create();
      // NCCL's watchdog ends the process (abort) when a collective outlives options->timeout;
      // at twice ours, wait() reports a rank that died or hangs first, in one line.
      options->timeout = 2 * timeout;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size, options);
      // Bound to the GPU and connected now, as init_process_group(device_id=...) does, not at the
      // first collective: a GPU NCCL cannot use, or two ranks on one GPU, fail here.
      impl_->group->setBoundDeviceId(gpu);
      impl_->group->eagerConnectSingleDevice(gpu);
    } catch (const std::exception& e) {
      throw Error(where + ": the NCCL process group could not start on " + gpu.str() + ": " + one_line(e.what()));
    }
    return;
  }
#endif
#ifdef ATTNSEG_WITH_GLOO
  try {
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = timeout;
    if (const char* name = std::getenv("GLOO_SOCKET_IFNAME")) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, options);
  } catch (const std::exception& e) {
    throw Error(where + ": the Gloo process group could not start: " + one_line(e.what()));
  }
#endif
}

ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::size() const { return impl_->env.world_size; }

void ProcessGroup::broadcast(at::Tensor& tensor, int root) {
  std::vector<at::Tensor> one{impl_->staged(tensor)};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  impl_->wait(impl_->group->broadcast(one, options), "broadcast");
  impl_->unstage(one[0], tensor);
}

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) {
  std::vector<at::Tensor> one{impl_->staged(tensor)};
  impl_->wait(impl_->group->allreduce(one), "all-reduce");
  impl_->unstage(one[0], tensor);
}

// The buckets live where the parameters do: on the rank's GPU in an NCCL job.
std::unique_ptr<ProcessGroup::Pending> ProcessGroup::start_all_reduce_sum(at::Tensor& flat) {
  class GlooPending : public Pending {
   public:
    GlooPending(const Impl* impl, c10::intrusive_ptr<c10d::Work> work) : impl_(impl), work_(std::move(work)) {}
    void wait() override { impl_->wait(work_, "gradient all-reduce"); }

   private:
    const Impl* impl_;
    c10::intrusive_ptr<c10d::Work> work_;
  };
  std::vector<at::Tensor> one{flat};
  return std::make_unique<GlooPending>(impl_.get(), impl_->group->allreduce(one));
}

#else

bool distributed_available() { return false; }
bool nccl_available() { return false; }

struct ProcessGroup::Impl {};

ProcessGroup::ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds, std::optional<c10::Device>) {
  throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
              ": this build has no c10d process group " + kNoGlooReason);
}
ProcessGroup::~ProcessGroup() = default;
int ProcessGroup::rank() const { return 0; }
int ProcessGroup::size() const { return 1; }
void ProcessGroup::broadcast(at::Tensor&, int) {}
void ProcessGroup::all_reduce_sum(at::Tensor&) {}
std::unique_ptr<ProcessGroup::Pending> ProcessGroup::start_all_reduce_sum(at::Tensor&) { return nullptr; }

#endif

void ProcessGroup::barrier() {
  at::Tensor done = at::zeros({1});
  all_reduce_sum(done);
}

SumOverRanks sum_over(ProcessGroup* group) {
  if (!group) return {};
  return [group](at::Tensor& t) { group->all_reduce_sum(t); };
}

void decide_on_rank_zero(ProcessGroup* group, int rank, const std::function<void()>& decide) {
  std::string refusal;
  if (rank == 0) {
    try {
      decide();
    } catch (const Error& e) {
      if (!group) throw;
      refusal = e.what();
    }
  }
  if (!group) return;
  at::Tensor refused = at::full({1}, refusal.empty() ? 0 : 1, at::kLong);
  group->broadcast(refused, 0);
  if (!refusal.empty()) throw Error(refusal);
  if (refused.item<int64_t>() != 0) {
    const std::string what = "rank " + std::to_string(rank) + " of " + std::to_string(group->size()) +
                             ": rank 0 refused the job (its error line says why)";
    if (std::getenv(kLaunchedByNproc) != nullptr) throw RankZeroRefused(what);
    throw Error(what);
  }
}

void broadcast_model(ProcessGroup& group, Segmentor& model) {
  std::vector<at::Tensor> tensors = model->parameters();
  for (const at::Tensor& b : model->buffers()) tensors.push_back(b);
  by_dtype(tensors, [&](at::Tensor& flat) { group.broadcast(flat, 0); });
}

void broadcast_buffers(ProcessGroup& group, Segmentor& model) {
  by_dtype(model->buffers(), [&](at::Tensor& flat) { group.broadcast(flat, 0); });
}

struct GradientAverager::State {
  ProcessGroup* group = nullptr;
  std::vector<at::Tensor> parameters;
  std::vector<std::vector<size_t>> buckets;  // parameter indices
  std::vector<size_t> bucket_of, offset_in_bucket;
  std::vector<at::Tensor> flat;               // one per bucket
  std::vector<size_t> arrived;                // gradients arrived per bucket this step
  std::vector<bool> has_gradient;             // per parameter, this step
  std::vector<std::unique_ptr<ProcessGroup::Pending>> pending;
  size_t next_to_start = 0;
  std::mutex mutex;

  void start_ready() {
    while (next_to_start < buckets.size() && arrived[next_to_start] == buckets[next_to_start].size()) {
      pending[next_to_start] = group->start_all_reduce_sum(flat[next_to_start]);
      ++next_to_start;
    }
  }

  void gradient_arrived(size_t index, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mutex);
    const size_t b = bucket_of[index];
    const at::Tensor& p = parameters[index];
    flat[b].narrow(0, static_cast<int64_t>(offset_in_bucket[index]), p.numel()).copy_(grad.reshape({-1}));
    if (!has_gradient[index]) {
      has_gradient[index] = true;
      ++arrived[b];
    }
    start_ready();
  }
};

GradientAverager::GradientAverager(ProcessGroup& group, Segmentor& model, int64_t bucket_bytes)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.group = &group;
  for (const at::Tensor& p : model->parameters()) {
    if (p.requires_grad()) s.parameters.push_back(p);
  }
  s.bucket_of.resize(s.parameters.size());
  s.offset_in_bucket.resize(s.parameters.size());
  // Reverse registration order: backward reaches the head's parameters first.
  int64_t bytes = 0;
  for (size_t k = s.parameters.size(); k-- > 0;) {
    const at::Tensor& p = s.parameters[k];
    const bool same_kind = !s.buckets.empty() && s.parameters[s.buckets.back().front()].scalar_type() == p.scalar_type() &&
                           s.parameters[s.buckets.back().front()].device() == p.device();
    if (s.buckets.empty() || !same_kind || bytes >= bucket_bytes) {
      s.buckets.emplace_back();
      bytes = 0;
    }
    s.buckets.back().push_back(k);
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    int64_t numel = 0;
    for (size_t k : s.buckets[b]) {
      s.bucket_of[k] = b;
      s.offset_in_bucket[k] = static_cast<size_t>(numel);
      numel += s.parameters[k].numel();
    }
    s.flat.push_back(at::zeros({numel}, s.parameters[s.buckets[b].front()].options().requires_grad(false)));
  }
  s.arrived.assign(s.buckets.size(), 0);
  s.has_gradient.assign(s.parameters.size(), false);
  s.pending.resize(s.buckets.size());
  std::weak_ptr<State> weak = state_;
  for (size_t k = 0; k < s.parameters.size(); ++k) {
    s.parameters[k].register_hook([weak, k](const at::Tensor& grad) {
      if (auto state = weak.lock()) state->gradient_arrived(k, grad);
    });
  }
}

GradientAverager::~GradientAverager() = default;

void GradientAverager::finish() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  // A parameter no gradient reached this step adds zeros; then every bucket not yet started
  // starts, in order.
  for (size_t b = s.next_to_start; b < s.buckets.size(); ++b) {
    for (size_t k : s.buckets[b]) {
      if (!s.has_gradient[k]) {
        s.flat[b].narrow(0, static_cast<int64_t>(s.offset_in_bucket[k]), s.parameters[k].numel()).zero_();
        s.has_gradient[k] = true;
        ++s.arrived[b];
      }
    }
  }
  s.start_ready();
  const double world = s.group->size();
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    s.pending[b]->wait();
    s.pending[b].reset();
    s.flat[b].div_(world);
    for (size_t k : s.buckets[b]) {
      at::Tensor& p = s.parameters[k];
      const at::Tensor average = s.flat[b].narrow(0, static_cast<int64_t>(s.offset_in_bucket[k]), p.numel()).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(average);
      } else {
        p.mutable_grad() = average.clone();
      }
    }
  }
  s.arrived.assign(s.buckets.size(), 0);
  s.has_gradient.assign(s.parameters.size(), false);
  s.next_to_start = 0;
}

std::vector<std::vector<size_t>> GradientAverager::buckets() const { return state_->buckets; }

}  // namespace attnseg
