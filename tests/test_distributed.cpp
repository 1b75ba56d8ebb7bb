// Data-parallel training on c10d's Gloo process group, with real processes on this machine:
// `attnseg train --nproc 2`, and two processes launched through the environment as torchrun
// sets it. Each run is the tiny model on a tiny synthetic dataset (a few seconds).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "data/synthetic.h"
#include "engine/checkpoint.h"
#include "engine/distributed.h"
#include "engine_util.h"
#include "test_util.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;
using test::run_attnseg;
using test::TempDir;
using test::tiny_config;
using test::write_file;

class Distributed : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    write_synthetic_dataset(data_->path(), {24, 3, 32, 0});
  }
  static void TearDownTestSuite() { delete data_; }
  void SetUp() override {
    if (!distributed_available()) GTEST_SKIP() << "this build has no c10d Gloo process group (libgloo-dev)";
    write_file(dir / "tiny.yaml", tiny_config(data_->path()));
  }

  // `attnseg train` of the tiny config for `iters` steps of a global batch of 8, no dropout (its
  // random masks differ between one and two processes), into `name`; on the CPU (Gloo) also where
  // a GPU would make it an NCCL job.
  test::CommandResult train(const std::string& name, const std::string& extra, int iters = 20,
                            const std::string& env = "") {
    return run_attnseg("train '" + (dir / "tiny.yaml").string() + "' --work-dir '" + (dir / name).string() +
                           "' data.batch_size=8 train.iters=" + std::to_string(iters) +
                           " train.warmup_iters=0 train.checkpoint_interval=2 train.lr=0.001 "
                           "model.head.dropout=0 model.aux_head.dropout=0 runtime.dist_timeout=60 "
                           "runtime.device=cpu " +
                           extra,
                       env);
  }

  // The environment torchrun gives a job of two ranks on this machine, without RANK and
  // LOCAL_RANK, at a free port.
  static std::string two_rank_env() {
    return "WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(test::free_port());
  }

  Segmentor load(const std::string& name, int iteration) {
    Segmentor model = test::model_of(Config::load(dir / "tiny.yaml"));
    load_checkpoint(dir / name / ("iter_" + std::to_string(iteration) + ".pt"), model);
    return model;
  }

  // The largest absolute difference over the parameters, and over the floating buffers
  // (BatchNorm's running statistics) relative to each one's largest magnitude.
  static std::pair<double, double> difference(const Segmentor& a, const Segmentor& b) {
    double parameters = 0, buffers = 0;
    const auto pa = a->named_parameters(), pb = b->named_parameters();
    for (const auto& item : pa) {
      parameters = std::max(parameters, (item.value() - pb[item.key()]).abs().max().item<double>());
    }
    const auto ba = a->named_buffers(), bb = b->named_buffers();
    for (const auto& item : ba) {
      if (!item.value().is_floating_point()) continue;
      const double scale = std::max(item.value().abs().max().item<double>(), 1e-12);
      buffers = std::max(buffers, (item.value() - bb[item.key()]).abs().max().item<double>() / scale);
    }
    return {parameters, buffers};
  }

  static TempDir* data_;
  TempDir dir;
};
TempDir* Distributed::data_ = nullptr;

// The property: 2 processes × 4 images reach the weights of 1 process × 8 after 20 steps.
// Exact in arithmetic: each rank's shard is its half of the one-process batch, BatchNorm is
// synchronised, the loss is divided by the job's labelled pixels (the random scaling pads
// crops with ignored pixels, unevenly between the shards), and gradients are averaged. In float
// the two runs add in different orders; at lr 0.001 the differences stay at rounding level
// (parameters 3e-6 apart on the 64×384 model in one measurement; at the default lr 0.02 they
// grow to the percent in 20 steps, which is the trajectory's sensitivity, not a fault).
TEST_F(Distributed, TwoProcessesWithSyncBnReachTheOneProcessWeightsAfterTwentySteps) {
  const auto one = train("one", "");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto two = train("two", "--nproc 2 model.sync_bn=true");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("data-parallel: rank 0 of 2"), std::string::npos) << two.output;
  const auto [parameters, buffers] = difference(load("one", 20), load("two", 20));
  EXPECT_LT(parameters, 1e-5);
  EXPECT_LT(buffers, 1e-4);
  // The logged losses are the job's: the one-process ones.
  const std::vector<double> a = test::losses(dir / "one" / "metrics.jsonl"),
                            b = test::losses(dir / "two" / "metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * a[i]) << "logged loss " << i;
}

// Without synchronised BatchNorm each rank normalises with its own 4 images: a different
// model, as the README says (parameters about 1e-3 apart here, running statistics by tens of
// percent), so that the test above shows what sync_bn does.
TEST_F(Distributed, WithoutSyncBnEachRankNormalisesItsOwnShardAndTheWeightsDiffer) {
  ASSERT_EQ(train("one", "").exit_code, 0);
  const auto two = train("two", "--nproc 2");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const auto [parameters, buffers] = difference(load("one", 20), load("two", 20));
  EXPECT_GT(parameters, 1e-4);
  EXPECT_GT(buffers, 1e-2);
}

// torchrun's way: each process started by the launcher with RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT set. The result is the --nproc run's, bit for bit.
TEST_F(Distributed, ProcessesLaunchedThroughTheEnvironmentAsTorchrunSetsItFormOneJob) {
  const auto nproc = train("nproc", "--nproc 2 model.sync_bn=true", 4);
  ASSERT_EQ(nproc.exit_code, 0) << nproc.output;
  const std::string common = two_rank_env();
  const fs::path log = dir / "rank1.log";
  const pid_t rank1 = test::spawn_attnseg(
      "train '" + (dir / "tiny.yaml").string() + "' --work-dir '" + (dir / "env").string() +
          "' data.batch_size=8 train.iters=4 train.warmup_iters=0 train.checkpoint_interval=2 train.lr=0.001 "
          "model.head.dropout=0 model.aux_head.dropout=0 runtime.dist_timeout=60 model.sync_bn=true",
      log, common + " RANK=1 LOCAL_RANK=1");
  const auto rank0 = train("env", "model.sync_bn=true", 4, common + " RANK=0 LOCAL_RANK=0");
  EXPECT_EQ(test::wait_exit_code(rank1), 0) << test::read_file(log);
  ASSERT_EQ(rank0.exit_code, 0) << rank0.output;
  const auto [parameters, buffers] = difference(load("nproc", 4), load("env", 4));
  EXPECT_EQ(parameters, 0.0);
  EXPECT_EQ(buffers, 0.0);
}

// Under torchrun each rank is started on its own, so only rank 0 can find the directory taken
// by an earlier run; rank 1 then says that rank 0 refused, not that a broadcast lost its peer.
TEST_F(Distributed, ARankZeroRefusalUnderTorchrunEndsEveryRankInOneLineSayingSo) {
  ASSERT_EQ(train("env", "", 2).exit_code, 0);
  const std::string common = two_rank_env();
  const fs::path log = dir / "rank1.log";
  const pid_t rank1 = test::spawn_attnseg("train '" + (dir / "tiny.yaml").string() + "' --work-dir '" +
                                              (dir / "env").string() + "' train.iters=2 runtime.dist_timeout=60",
                                          log, common + " RANK=1 LOCAL_RANK=1");
  const auto rank0 = train("env", "", 2, common + " RANK=0 LOCAL_RANK=0");
  EXPECT_NE(test::wait_exit_code(rank1), 0);
  EXPECT_NE(rank0.exit_code, 0);
  EXPECT_NE(rank0.output.find("holds an earlier run"), std::string::npos) << rank0.output;
  const std::string said = test::read_file(log);
  EXPECT_NE(said.find("error: rank 1 of 2: rank 0 refused the job"), std::string::npos) << said;
  EXPECT_EQ(said.find("failed"), std::string::npos) << said;
}

// Under --nproc the launcher sees every rank: rank 1 ends without a line of its own (before,
// its "rank 0 refused" line came too, and when it ended first the launcher named rank 1 and
// stopped rank 0, racing rank 0's own line), and the launcher names rank 0.
TEST_F(Distributed, ARankZeroRefusalUnderNprocIsSaidInRankZerosLineAloneAndTheLauncherNamesRankZero) {
  ASSERT_EQ(train("run", "", 2).exit_code, 0);
  for (const auto& e : fs::directory_iterator(dir / "run")) {
    if (e.path().extension() == ".pt") write_file(e.path(), "not a checkpoint");
  }
  const auto r = train("run", "--nproc 2 --resume", 2);
  test::expect_clean_error(r, {"no checkpoint in", "can be read"});
  EXPECT_NE(r.output.find("rank 0 of 2 exited with status 1"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("rank 1"), std::string::npos) << r.output;
}

// `attnseg eval --nproc 2`: rank 0 segments validation images 0 and 2, rank 1 image 1 (an
// uneven shard), each writing its own overlays; the report is the one-process report (the same
// confusion matrix, image count, mIoU and per-class figures) and the overlays are the same files.
TEST_F(Distributed, EvalInTwoProcessesReportsTheOneProcessConfusionMatrixAndWritesEveryOverlay) {
  const auto trained = train("run", "", 2);
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  auto eval = [&](const std::string& name, const std::string& extra) {
    const auto r = run_attnseg("eval '" + (dir / "tiny.yaml").string() + "' --checkpoint '" +
                               (dir / "run/iter_2.pt").string() + "' --json '" + (dir / (name + ".json")).string() +
                               "' --show-dir '" + (dir / name).string() + "' runtime.device=cpu " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(test::read_file(dir / (name + ".json")));
  };
  const nlohmann::json one = eval("one", ""), two = eval("two", "--nproc 2");
  EXPECT_EQ(two["images"], 3);
  for (const char* key : {"images", "confusion", "aAcc", "mIoU", "classes"}) EXPECT_EQ(two[key], one[key]) << key;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir / "one")) names.push_back(entry.path().filename().string());
  ASSERT_EQ(names.size(), 3u);
  for (const std::string& name : names) {
    ASSERT_TRUE(fs::exists(dir / "two" / name)) << name;
    EXPECT_EQ(test::read_file(dir / "two" / name), test::read_file(dir / "one" / name)) << name;
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "two"), fs::directory_iterator()), 3);
}

// `attnseg sweep --nproc 2`: each run is the two-process training of its config (the weights of
// `train --nproc 2` with the same keys, bit for bit) and its sharded evaluation over all the
// validation images; rank 0 alone writes the reports: one leaderboard with the block's row.
TEST_F(Distributed, SweepInTwoProcessesTrainsEachRunAsTheTwoProcessTrainingAndReportsOnce) {
  const std::string keys =
      " data.batch_size=8 train.iters=2 train.warmup_iters=0 train.checkpoint_interval=2 train.lr=0.001 "
      "model.head.dropout=0 model.aux_head.dropout=0 runtime.dist_timeout=60 runtime.device=cpu";
  const auto swept = run_attnseg("sweep '" + (dir / "tiny.yaml").string() + "' --blocks ccnet --work-dir '" +
                                 (dir / "sweep").string() + "' --nproc 2 --rounds 1 --iters 1" + keys);
  ASSERT_EQ(swept.exit_code, 0) << swept.output;
  std::vector<fs::path> runs;
  for (const auto& entry : fs::directory_iterator(dir / "sweep" / "ccnet")) runs.push_back(entry.path());
  ASSERT_EQ(runs.size(), 1u);
  const std::string seed = runs[0].filename().string().substr(4);  // seed<N>
  const auto direct = train("direct", "--nproc 2 model.attention.type=ccnet train.seed=" + seed, 2);
  ASSERT_EQ(direct.exit_code, 0) << direct.output;
  const auto [parameters, buffers] = difference(load("sweep/ccnet/seed" + seed, 2), load("direct", 2));
  EXPECT_EQ(parameters, 0.0);
  EXPECT_EQ(buffers, 0.0);
  const nlohmann::json eval = nlohmann::json::parse(test::read_file(runs[0] / "eval.json"));
  EXPECT_EQ(eval["images"], 3);
  const std::string board = test::read_file(dir / "sweep" / "leaderboard.csv");
  EXPECT_NE(board.find("ccnet"), std::string::npos) << board;
  // One leaderboard printed, by rank 0.
  size_t printed = 0;
  for (size_t at = swept.output.find("| # | block"); at != std::string::npos; at = swept.output.find("| # | block", at + 1)) {
    ++printed;
  }
  EXPECT_EQ(printed, 1u) << swept.output;
}

// WORLD_SIZE=1 forms no group unless runtime.dist_backend names one; with gloo named the process
// runs the whole data-parallel path alone (broadcast, bucketed all-reduce, the loss over the
// job's pixels, synchronised BatchNorm) and reaches the plain run's weights within the issue's
// tolerance for equal runs (1e-5; statistics 1e-4 of their size): the same arithmetic in
// another order (synchronised BatchNorm sums, then divides), 3e-8 apart in one run.
TEST_F(Distributed, AJobOfOneWithANamedBackendTakesTheDataParallelPathToThePlainWeights) {
  const std::string one = "WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                          std::to_string(test::free_port());
  const auto plain = train("plain", "model.sync_bn=true", 4);
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  const auto automatic = train("auto", "model.sync_bn=true", 4, one);
  ASSERT_EQ(automatic.exit_code, 0) << automatic.output;
  EXPECT_EQ(automatic.output.find("data-parallel"), std::string::npos) << automatic.output;
  const auto alone = train("alone", "model.sync_bn=true runtime.dist_backend=gloo", 4, one);
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  EXPECT_NE(alone.output.find("data-parallel: rank 0 of 1"), std::string::npos) << alone.output;
  const auto [parameters, buffers] = difference(load("plain", 4), load("alone", 4));
  EXPECT_LT(parameters, 1e-5);
  EXPECT_LT(buffers, 1e-4);
}

// A rank that dies (SIGKILL as it starts its sixth step) ends the job: the launcher names it,
// stops the others and exits non-zero; the last complete checkpoint loads, and --resume with
// one process (another world size) finishes the run.
TEST_F(Distributed, AKilledRankEndsTheJobNamingItAndOneProcessResumesFromTheLastCheckpoint) {
  const auto killed = train("run", "--nproc 2", 20, "ATTNSEG_KILL_AT=step:rank1:6");
  test::expect_clean_error(killed, {"rank 1 of 2 was killed by signal 9", "the other ranks were stopped"});
  for (const auto& entry : fs::directory_iterator(dir / "run")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << "half-written " << entry.path();
  }
  const fs::path last = latest_checkpoint(dir / "run");
  ASSERT_FALSE(last.empty());
  Segmentor model = test::model_of(Config::load(dir / "tiny.yaml"));
  EXPECT_GE(load_checkpoint(last, model).iteration, 2);
  const auto resumed = train("run", "--resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(fs::exists(dir / "run" / "iter_20.pt"));
}

// The learning curve's validation in a job: each rank segments every second image, the
// confusion matrices are added over the ranks, and every rank holds the one-process matrix,
// exactly. Two ranks as two threads of this process, each with its own process group and its
// own copy of the model.
TEST_F(Distributed, ShardedValidationGivesTheOneProcessConfusionMatrixExactly) {
  const Experiment x = read_experiment(Config::load(dir / "tiny.yaml"));
  const FolderDataset val(x.data.val);
  ASSERT_GE(val.size(), 3u);
  Segmentor single = build_model(x);
  const Validation whole = validate(single, val, x, Runtime{}, 0);
  std::array<Segmentor, 2> models{build_model(x), build_model(x)};
  std::array<Validation, 2> shards;
  std::array<std::string, 2> errors;
  const int port = test::free_port();
  auto rank = [&](int r) {
    try {
      DistributedEnv env;
      env.rank = r;
      env.world_size = 2;
      env.master_port = port;
      ProcessGroup group(env, std::chrono::seconds(60));
      Runtime runtime;
      runtime.rank = r;
      runtime.world_size = 2;
      shards[r] = validate(models[r], val, x, runtime, 0, [&](at::Tensor& t) { group.all_reduce_sum(t); });
    } catch (const std::exception& e) {
      errors[r] = e.what();
    }
  };
  std::thread rank0(rank, 0), rank1(rank, 1);
  rank0.join();
  rank1.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    EXPECT_TRUE(torch::equal(shards[r].confusion, whole.confusion)) << "rank " << r;
    EXPECT_EQ(shards[r].images, whole.images);
    EXPECT_EQ(shards[r].metrics.miou, whole.metrics.miou);
  }
  EXPECT_GT(whole.confusion.sum().item<int64_t>(), 0);
}

// Each refused with one line naming the variable or key; what every rank would refuse alike
// (the batch, the datasets) is refused by --nproc before any rank starts, so it is said once.
TEST_F(Distributed, AMalformedEnvironmentOrJobSettingIsRefusedOnceNamingIt) {
  test::expect_clean_error(train("bad", "", 2, "WORLD_SIZE=2 RANK=5"), {"RANK", "WORLD_SIZE"});
  test::expect_clean_error(train("bad", "", 2, "WORLD_SIZE=two RANK=0"), {"WORLD_SIZE", "'two'"});
  test::expect_clean_error(train("bad", "", 2, "WORLD_SIZE=2 RANK=0 MASTER_PORT=70000"), {"MASTER_PORT"});
  test::expect_clean_error(train("bad", "--nproc 2", 2, "WORLD_SIZE=2 RANK=0"), {"--nproc", "WORLD_SIZE"});
  test::expect_clean_error(train("bad", "runtime.dist_timeout=-1", 2), {"runtime.dist_timeout"});
  test::expect_clean_error(train("bad", "--nproc 3 data.batch_size=2", 2), {"--nproc 3", "data.batch_size"});
  test::expect_clean_error(train("bad", "--nproc 2 data.root=/nonexistent/attnseg", 2), {"/nonexistent/attnseg"});
  // NCCL on the CPU, or where this build lacks it.
  test::expect_clean_error(train("bad", "--nproc 2 runtime.dist_backend=nccl", 2), {"runtime.dist_backend"});
}

// NCCL's process group with one rank on the first GPU (what a one-GPU machine can run): in-place
// sums and a broadcast of a GPU tensor and of CPU tensors (the logged losses, the checkpoint rank
// 0 picked), which go through the GPU and come back, and a gradient bucket's all-reduce.
TEST(DistributedNccl, AGroupOfOneSumsAndBroadcastsGpuAndCpuTensorsInPlace) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (!nccl_available()) GTEST_SKIP() << "this build has no NCCL process group";
  DistributedEnv env;  // rank 0 of 1
  env.master_port = test::free_port();
  ProcessGroup group(env, std::chrono::seconds(60), at::Device(at::kCUDA, 0));
  at::Tensor gpu = torch::arange(5, torch::TensorOptions().dtype(at::kFloat).device(at::kCUDA, 0));
  at::Tensor losses = torch::tensor({0.5, 0.25}, at::kDouble);
  at::Tensor iteration = torch::full({1}, int64_t{7}, at::kLong);
  group.all_reduce_sum(gpu);
  group.all_reduce_sum(losses);
  group.broadcast(iteration, 0);
  group.start_all_reduce_sum(gpu)->wait();
  ASSERT_TRUE(gpu.is_cuda());
  ASSERT_TRUE(losses.is_cpu() && iteration.is_cpu());
  EXPECT_TRUE(torch::equal(gpu.cpu(), torch::arange(5, at::kFloat)));
  EXPECT_TRUE(torch::equal(losses, torch::tensor({0.5, 0.25}, at::kDouble)));
  EXPECT_EQ(iteration.item<int64_t>(), 7);
}

}  // namespace
}  // namespace attnseg
