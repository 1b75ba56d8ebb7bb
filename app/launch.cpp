#include "launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "core/error.h"

namespace attnseg::app {

namespace {

// A TCP port on the loopback interface that nothing listens on now (the kernel's pick).
int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("--nproc: cannot open a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t length = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0;
  ::close(fd);
  if (!ok) throw Error("--nproc: cannot find a free port on 127.0.0.1");
  return ntohs(addr.sin_port);
}

// Each rank of an NCCL job computes on a GPU of its own: LOCAL_RANK's, as in torchrun's jobs, or
// the only one a rank sees when its launcher gave each rank its own (CUDA_VISIBLE_DEVICES). Only
// where runtime.device leaves the GPU open (auto, cuda) and NCCL will be the backend; a GPU
// named by cuda:N is kept.
void use_own_gpu(RuntimeSettings& settings, const DistributedEnv& env) {
  if (settings.dist_backend == "gloo" || !nccl_available() ||
      (settings.device != "auto" && settings.device != "cuda") || !torch::cuda::is_available()) {
    return;
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  const int gpu = count == 1 ? 0 : env.local_rank;
  if (gpu >= count) {
    throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": LOCAL_RANK " +
                std::to_string(env.local_rank) + " has no GPU of its own, this machine has " + std::to_string(count) +
                "; start at most " + std::to_string(count) + " ranks on it");
  }
  settings.device = "cuda:" + std::to_string(gpu);
}

// The command line without --nproc N (or --nproc=N).
std::vector<std::string> without_nproc(const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--nproc") {
      ++i;
      continue;
    }
    if (argv[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(argv[i]);
  }
  return out;
}

// Whether a job's ranks join NCCL's process group: runtime.dist_backend nccl, or auto on GPUs
// (Gloo's otherwise). NCCL where this build lacks it, or for ranks on the CPU, is refused.
bool job_uses_nccl(const RuntimeSettings& settings, const Runtime& runtime) {
  const bool nccl = settings.dist_backend == "nccl" || (settings.dist_backend == "auto" && runtime.cuda());
  if (nccl && !nccl_available()) {
    throw Error("runtime.dist_backend: NCCL is not in this build; set runtime.dist_backend=gloo or train on the CPU");
  }
  if (nccl && !runtime.cuda()) {
    throw Error("runtime.dist_backend: nccl needs the ranks on GPUs, but runtime.device is cpu; set "
                "runtime.dist_backend=gloo or runtime.device=cuda");
  }
  return nccl;
}

}  // namespace

bool check_local_launch(const RuntimeSettings& settings) {
  if (std::getenv("WORLD_SIZE") != nullptr) {
    throw Error("--nproc: this process is already part of a job (WORLD_SIZE is set): launch either with --nproc or "
                "with torchrun/the environment, not both");
  }
  if (!distributed_available() && !nccl_available()) {
    throw Error(std::string("--nproc: this build has no c10d process group ") + kNoGlooReason);
  }
  // A device or precision the machine cannot run, or NCCL where this build lacks it.
  const bool nccl = job_uses_nccl(settings, start_runtime(settings));
  if (!nccl && !distributed_available()) {
    throw Error(std::string("--nproc: this build has no Gloo process group ") + kNoGlooReason +
                "; a job on GPUs can use runtime.dist_backend=nccl");
  }
  return nccl;
}

int launch_local_ranks(const std::string& command, int nproc, const std::vector<std::string>& argv, bool nccl,
                       const std::string& after_failure) {
  const int port = free_local_port();
  const std::vector<std::string> args = without_nproc(argv);
  spdlog::info("{}: starting {} local ranks ({}, rendezvous at 127.0.0.1:{})", command, nproc, nccl ? "NCCL" : "Gloo",
               port);
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> ranks;
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : ranks) ::kill(p, SIGTERM);
      throw Error("--nproc: cannot start rank " + std::to_string(r));
    }
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv(kLaunchedByNproc, "1", 1);
      std::vector<char*> exec_argv;
      for (const std::string& a : args) exec_argv.push_back(const_cast<char*>(a.c_str()));
      exec_argv.push_back(nullptr);
      ::execv("/proc/self/exe", exec_argv.data());
      std::fprintf(stderr, "error: rank %d: cannot run /proc/self/exe\n", r);
      ::_exit(127);
    }
    ranks.push_back(pid);
  }
  int failed = -1, code = 0;
  bool deferred = false;  // a rank ended because rank 0 refused; rank 0's status is the job's
  std::string why;
  for (size_t left = ranks.size(); left > 0; --left) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) break;
    const auto it = std::find(ranks.begin(), ranks.end(), pid);
    if (it == ranks.end()) {
      ++left;
      continue;
    }
    const int rank = static_cast<int>(it - ranks.begin());
    *it = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == kDeferredToRankZero) {
      deferred = true;
      continue;
    }
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && failed < 0) {
      failed = rank;
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      why = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                              : "was killed by signal " + std::to_string(WTERMSIG(status));
      // The others would wait for it until runtime.dist_timeout: end them now.
      for (pid_t p : ranks) {
        if (p > 0) ::kill(p, SIGTERM);
      }
    }
  }
  if (failed >= 0 && code == 1) {
    // attnseg's own error exit: the rank has printed its one line already.
    spdlog::warn("rank {} of {} {}; the other ranks were stopped", failed, nproc, why);
    return code;
  }
  if (failed >= 0) {
    throw Error("rank " + std::to_string(failed) + " of " + std::to_string(nproc) + " " + why +
                "; the other ranks were stopped" + after_failure);
  }
  if (deferred) throw Error("a rank stopped because rank 0 refused the job, yet rank 0 ended without error");
  return code;
}


void check_images_per_rank(int64_t batch, int nproc, const std::string& whose) {
  if (batch < nproc) {
    throw Error("--nproc " + std::to_string(nproc) + ": data.batch_size (" + std::to_string(batch) + ") is " + whose +
                " batch and must give every rank at least one image");
  }
}

RankRuntime begin_rank(const std::string& command, RuntimeSettings settings) {
  const std::optional<DistributedEnv> env = distributed_env_from_environment();
  // A job of one forms no group, unless runtime.dist_backend names one: then the process goes
  // through the whole data-parallel path alone (what it costs over plain training).
  const bool job = env && (env->world_size > 1 || settings.dist_backend != "auto");
  if (job) {
    // Only rank 0 talks; the others say only what goes wrong.
    if (env->rank != 0) spdlog::set_level(spdlog::level::warn);
    // The ranks on one machine share its cores.
    if (settings.threads == 0) {
      const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      settings.threads = std::max(1, cores / env->local_world_size);
    }
    use_own_gpu(settings, *env);
  }
  RankRuntime rank{begin_command(command, settings), nullptr};
  if (job) {
    const bool nccl = job_uses_nccl(settings, rank.runtime);
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(1000 * settings.dist_timeout_s));
    rank.group = std::make_unique<ProcessGroup>(
        *env, timeout, nccl ? std::optional<c10::Device>(rank.runtime.device) : std::nullopt);
    rank.runtime.rank = env->rank;
    rank.runtime.world_size = env->world_size;
  }
  return rank;
}

}  // namespace attnseg::app
