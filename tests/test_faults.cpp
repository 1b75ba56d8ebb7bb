// Faults a long run meets: writes that fail part-way, kills at any moment (inside checkpoint
// writes too), two runs into one directory, corrupt checkpoints, bad numbers in a config, a
// source with no frame, a benchmark that would not fit in memory. Each ends in one clear line
// and a non-zero exit, or is survived, and never costs finished work.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <regex>
#include <thread>

#include "config/config.h"
#include "core/device.h"
#include "core/work_dir_lock.h"
#include "engine/bench.h"
#include "engine/distributed.h"
#include "engine/experiment.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::expect_clean_error;
using test::read_file;
using test::run_attnseg;
using test::TempDir;
using test::tiny_config;
using test::write_file;
namespace fs = std::filesystem;

// Files a writer left half-done: temporary names (ours end in ".tmp" or ".tmp.<ext>").
std::vector<std::string> temporaries_in(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.path().filename().string().find(".tmp") != std::string::npos) found.push_back(e.path().string());
  }
  return found;
}

std::vector<std::string> checkpoint_names(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (std::regex_match(n, std::regex(R"(iter_[0-9]+\.pt)"))) names.push_back(n);
  }
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return std::stoll(a.substr(5)) < std::stoll(b.substr(5));  // after "iter_"
  });
  return names;
}

// metrics.jsonl as iteration -> loss.
std::map<int64_t, double> losses(const fs::path& metrics) {
  std::map<int64_t, double> out;
  std::istringstream in(read_file(metrics));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("iter")) out[j["iter"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

class Faults : public test::TinyDataTest {
 protected:
  std::string train(const std::string& work, const std::string& extra = "") {
    return "train " + config() + " --work-dir '" + (dir / work).string() + "' " + extra;
  }
};

// A write that fails part-way through a checkpoint (the file-size limit makes write() fail,
// as a full disk does): before, LibTorch's writer threw from its destructor and the process
// aborted with a backtrace, leaving iter_4.pt.tmp.
TEST_F(Faults, ACheckpointWriteThatFailsEndsInOneLineWithoutItsTemporaryAndKeepsTheLastGood) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=2")).exit_code, 0);
  const std::string good = read_file(dir / "w/iter_2.pt");
  ASSERT_GT(good.size(), 600000u) << "the limit below must cut the checkpoint";
  // dash counts ulimit -f in 512-byte blocks, bash in 1024: either way below the checkpoint
  // and above every other file the run writes
  const auto r = run_attnseg(train("w", "--resume"), "ulimit -f 600; trap '' XFSZ;");
  expect_clean_error(r, {"cannot write", "iter_4.pt", "File too large"});
  EXPECT_TRUE(temporaries_in(dir / "w").empty()) << temporaries_in(dir / "w").front();
  EXPECT_EQ(read_file(dir / "w/last_checkpoint"), "iter_2.pt\n");
  EXPECT_EQ(read_file(dir / "w/iter_2.pt"), good);
  EXPECT_FALSE(fs::exists(dir / "w/iter_4.pt"));
  const auto again = run_attnseg(train("w", "--resume"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("resumed from " + (dir / "w/iter_2.pt").string() + " at iteration 2"), std::string::npos)
      << again.output;
}

// The same with the disk's own error, injected at the write layer: the temporary file half
// written, then ENOSPC.
TEST_F(Faults, ACheckpointWriteOnAFullDiskEndsInOneLineWithoutItsTemporaryAndKeepsTheLastGood) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=2")).exit_code, 0);
  const std::string good = read_file(dir / "w/iter_2.pt");
  const auto r = run_attnseg(train("w", "--resume"), "ATTNSEG_FULL_DISK=iter_4.pt");
  expect_clean_error(r, {"cannot write", "iter_4.pt", "No space left on device"});
  EXPECT_TRUE(temporaries_in(dir / "w").empty()) << temporaries_in(dir / "w").front();
  EXPECT_EQ(read_file(dir / "w/last_checkpoint"), "iter_2.pt\n");
  EXPECT_EQ(read_file(dir / "w/iter_2.pt"), good);
  EXPECT_FALSE(fs::exists(dir / "w/iter_4.pt"));
}

// Replacing a file that turns out to be a directory: before, X.tmp stayed behind. eval and
// bench now see the directory before they compute (Cli.AReportOrOverlayPathThatCannotBeWritten...);
// the metrics rewrite meets it in the writer itself.
TEST_F(Faults, AWriteOntoADirectoryEndsInOneLineAndLeavesNoTemporary) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=2")).exit_code, 0);
  fs::create_directories(dir / "out/report.json");
  fs::create_directories(dir / "out/table.csv");
  auto r = run_attnseg("eval " + config() + " --checkpoint '" + (dir / "w/iter_2.pt").string() + "' --json '" +
                       (dir / "out/report.json").string() + "'");
  expect_clean_error(r, {"--json", "report.json", "a directory is in the way"});
  r = run_attnseg("bench --blocks none --channels 8 --sizes 5x7 --iters 1 --warmup 0 --csv '" +
                  (dir / "out/table.csv").string() + "'");
  expect_clean_error(r, {"--csv", "table.csv", "a directory is in the way"});
  // metrics.jsonl is rewritten (truncated to the resumed iteration) through the same writer
  fs::remove(dir / "w/metrics.jsonl");
  fs::create_directories(dir / "w/metrics.jsonl");
  r = run_attnseg(train("w", "--resume"));
  expect_clean_error(r, {"metrics.jsonl"});
  EXPECT_TRUE(temporaries_in(dir.path()).empty()) << temporaries_in(dir.path()).front();
}

// Before, nothing stopped a second run: both wrote the same directory and files.
TEST_F(Faults, ASecondRunIntoAWorkDirectoryInUseIsRefusedNamingTheHoldersPid) {
  const pid_t first = test::spawn_attnseg(train("w", "train.iters=100000 train.checkpoint_interval=0"),
                                          dir / "first.log");
  ASSERT_GT(first, 0);
  // The first run is training once it has logged an iteration (its lock taken before that).
  const fs::path lock_file = dir / "w" / WorkDirLock::kFileName;
  const std::string holder = "pid " + std::to_string(first) + " (train";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (read_file(dir / "w/metrics.jsonl").empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_NE(read_file(lock_file).find(holder), std::string::npos) << read_file(dir / "first.log");
  const std::string config_before = read_file(dir / "w/config.yaml");
  auto r = run_attnseg(train("w"));
  expect_clean_error(r, {"work directory", "in use by another run", holder});
  EXPECT_EQ(read_file(dir / "w/config.yaml"), config_before);

  // Killed, the first run's lock is gone with it: the next run takes the directory over and says so.
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  EXPECT_EQ(test::wait_exit_code(first), 128 + SIGKILL);
  r = run_attnseg(train("w", "--resume"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("took over the lock of " + holder), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no longer running"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(lock_file), "") << "a run that ended cleanly leaves the lock file empty";
}

// Before, a second `train` without --resume into a finished run's directory started again from
// iteration 0: it rewrote config.yaml and metrics.jsonl, overwrote iter_<N>.pt, and retention
// deleted the earlier run's other checkpoints.
TEST_F(Faults, AFreshRunIntoADirectoryHoldingAnEarlierRunsCheckpointsIsRefusedAndChangesNothing) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=3 train.checkpoint_interval=1 train.keep_checkpoints=3")).exit_code, 0);
  const auto contents = [&] {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::directory_iterator(dir / "w")) files[e.path().filename().string()] = read_file(e.path());
    return files;
  };
  const std::map<std::string, std::string> before = contents();
  ASSERT_EQ(checkpoint_names(dir / "w"), (std::vector<std::string>{"iter_1.pt", "iter_2.pt", "iter_3.pt"}));
  std::vector<std::string> launches{"train.iters=5 train.keep_checkpoints=1"};
  // Refused by the launcher too, before any rank starts (one line, not one per rank).
  if (distributed_available()) launches.push_back("--nproc 2 data.batch_size=2 train.iters=5");
  for (const std::string& extra : launches) {
    const auto r = run_attnseg(train("w", extra));
    expect_clean_error(r, {"work directory", "holds an earlier run", "3 checkpoint(s), newest iter_3.pt", "--resume"});
    EXPECT_EQ(contents(), before) << extra;
  }
  // A directory whose run was killed before its first checkpoint holds nothing to lose.
  fs::create_directories(dir / "killed");
  write_file(dir / "killed/config.yaml", before.at("config.yaml"));
  ASSERT_EQ(run_attnseg(train("killed", "train.iters=1")).exit_code, 0);
}

TEST_F(Faults, ResumeSkipsATruncatedNewestCheckpointForThePreviousIntactOne) {
  const std::string schedule = "train.iters=6 train.keep_checkpoints=3";
  ASSERT_EQ(run_attnseg(train("full", schedule)).exit_code, 0);
  // The same run stopped after its checkpoint at 4, whose tail the disk then lost.
  fs::copy(dir / "full", dir / "cut");
  fs::remove(dir / "cut/iter_6.pt");
  write_file(dir / "cut/last_checkpoint", "iter_4.pt\n");
  const std::string whole = read_file(dir / "cut/iter_4.pt");
  write_file(dir / "cut/iter_4.pt", whole.substr(0, whole.size() / 2));
  const auto r = run_attnseg(train("cut", "--resume " + schedule));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("skipping iter_4.pt"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resumed from " + (dir / "cut/iter_2.pt").string() + " at iteration 2"), std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(dir / "cut/iter_4.pt.unreadable"));
  // From iteration 2 the run is the uninterrupted one again.
  const auto full = losses(dir / "full/metrics.jsonl"), resumed = losses(dir / "cut/metrics.jsonl");
  ASSERT_EQ(resumed.size(), 6u);
  for (int64_t i = 1; i <= 6; ++i) EXPECT_EQ(resumed.at(i), full.at(i)) << "iteration " << i;
  EXPECT_EQ(read_file(dir / "cut/iter_6.pt").size(), read_file(dir / "full/iter_6.pt").size());
}

// Before, a missing last_checkpoint (a kill while it was replaced) restarted from iteration 0.
TEST_F(Faults, ResumeWithoutLastCheckpointFindsTheNewestCheckpointItself) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=4")).exit_code, 0);
  fs::remove(dir / "w/last_checkpoint");
  const auto r = run_attnseg(train("w", "--resume train.iters=6"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + (dir / "w/iter_4.pt").string() + " at iteration 4"), std::string::npos)
      << r.output;
  EXPECT_EQ(read_file(dir / "w/last_checkpoint"), "iter_6.pt\n");
}

// Before, config.yaml was rewritten before the load failed, describing a run that never was.
TEST_F(Faults, ResumeThatCannotLoadWritesNothing) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=2")).exit_code, 0);
  const std::string config_before = read_file(dir / "w/config.yaml");
  const std::string metrics_before = read_file(dir / "w/metrics.jsonl");
  auto r = run_attnseg("train " + config("nonlocal") + " --work-dir '" + (dir / "w").string() + "' --resume");
  expect_clean_error(r, {"iter_2.pt", "another model"});
  EXPECT_EQ(read_file(dir / "w/config.yaml"), config_before);
  EXPECT_EQ(read_file(dir / "w/metrics.jsonl"), metrics_before);

  write_file(dir / "w/iter_2.pt", "PK\x03\x04 not a whole archive");
  r = run_attnseg(train("w", "--resume"));
  expect_clean_error(r, {"no checkpoint in", "can be read", "iter_2.pt"});
  EXPECT_EQ(read_file(dir / "w/config.yaml"), config_before);
  EXPECT_EQ(read_file(dir / "w/metrics.jsonl"), metrics_before);
}

// Before, each resume kept its own count: after four resumes six checkpoints against a limit of two.
TEST_F(Faults, KeepCheckpointsHoldsAcrossResumes) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=2 train.checkpoint_interval=1 train.keep_checkpoints=2")).exit_code, 0);
  for (int iters = 4; iters <= 10; iters += 2) {
    const auto r = run_attnseg(train("w", "--resume train.checkpoint_interval=1 train.keep_checkpoints=2 train.iters=" +
                                              std::to_string(iters)));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(checkpoint_names(dir / "w"),
              (std::vector<std::string>{"iter_" + std::to_string(iters - 1) + ".pt",
                                        "iter_" + std::to_string(iters) + ".pt"}))
        << "after resuming to " << iters;
  }
}

// Before, NaN in data.std trained to a NaN loss with advice about the learning rate, and eval
// exited 0 with metrics from NaN inputs.
TEST_F(Faults, NonFiniteOrUnderflowingConfigNumbersAreRejectedByKeyBeforeAnythingIsWritten) {
  const std::vector<std::pair<std::string, std::string>> bad{
      {"data.std=[.nan,1,1]", "data.std"},   {"data.mean=[0,.inf,0]", "data.mean"},
      {"train.lr=.nan", "train.lr"},         {"train.lr=-.inf", "train.lr"},
      {"train.lr=1e-300", "train.lr"},       {"data.std=[1e-300,1,1]", "data.std"},
      {"train.momentum=1e40", "train.momentum"}, {"eval.scales=[1,.nan]", "eval.scales"},
      {"eval.scales=[0]", "eval.scales"},       {"eval.scales=[]", "eval.scales"},
      {"eval.scale=[2048,0]", "eval.scale"},      {"data.train_pipeline.scale=[2048,0]", "data.train_pipeline.scale"}};
  for (const auto& [override_, key] : bad) {
    const auto r = run_attnseg(train("w", override_));
    expect_clean_error(r, {"config key '" + key + "'", "(command line)"});
    EXPECT_FALSE(fs::exists(dir / "w")) << override_;
  }
  ASSERT_EQ(run_attnseg(train("ok", "train.iters=2")).exit_code, 0);
  const auto r = run_attnseg("eval " + config() + " --checkpoint '" + (dir / "ok/iter_2.pt").string() +
                             "' 'data.std=[.nan,1,1]'");
  expect_clean_error(r, {"config key 'data.std'"});
}

// Before: "showed 0 of 0 frames" and exit 0.
TEST_F(Faults, DemoOnAFileThatHoldsNoFrameExitsNonZeroNamingTheSource) {
  ASSERT_EQ(run_attnseg(train("w", "train.iters=2")).exit_code, 0);
  write_file(dir / "text.png", "not an image at all\n");
  const auto r = run_attnseg("demo " + config() + " --checkpoint '" + (dir / "w/iter_2.pt").string() +
                             "' --source '" + (dir / "text.png").string() + "' --headless --output '" +
                             (dir / "out.mp4").string() + "'");
  expect_clean_error(r, {"--source", "text.png", "no frame"});
  EXPECT_FALSE(fs::exists(dir / "out.mp4"));
  EXPECT_TRUE(temporaries_in(dir.path()).empty());
}

// Every file under `dir` by its path relative to it, with its bytes.
std::map<std::string, std::string> contents(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_file(e.path());
  }
  return files;
}

// `synth` of a small dataset into `out` and its command line, for a second run to redo with
// another seed.
std::string small_synthetic_set(const fs::path& out) {
  const std::string synth = "synth --out '" + out.string() + "' --train 3 --val 2 --size 24";
  const auto r = run_attnseg(synth);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return synth;
}

// synth killed while it writes a new dataset over an old one: the old one is whole and as it
// was (before, the killed run had replaced some scenes and not their masks), and the next run
// clears the dead run's stage and writes the new one.
TEST_F(Faults, ASynthKilledMidWayLeavesThePreviousDatasetAsItWasAndTheNextRunReplacesIt) {
  const fs::path out = dir / "set";
  const std::string synth = small_synthetic_set(out);
  const auto before = contents(out);
  const auto killed = run_attnseg(synth + " --seed 7", "ATTNSEG_KILL_AT=commit:val_00001:1");
  EXPECT_EQ(killed.exit_code, 128 + SIGKILL) << killed.output;
  EXPECT_EQ(contents(out), before);
  EXPECT_EQ(test::stages_beside(out).size(), 1u) << "the dead run's stage";
  const auto again = run_attnseg(synth + " --seed 7");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("replacing the dataset there"), std::string::npos) << again.output;
  EXPECT_TRUE(test::stages_beside(out).empty()) << test::stages_beside(out).front();
  EXPECT_NE(contents(out).at("images/val_00001.png"), before.at("images/val_00001.png"));
}

TEST_F(Faults, ASynthOnAFullDiskEndsInOneLineNamingTheFileAndLeavesThePreviousDataset) {
  const fs::path out = dir / "set";
  const std::string synth = small_synthetic_set(out);
  const auto before = contents(out);
  const auto r = run_attnseg(synth + " --seed 7", "ATTNSEG_FULL_DISK=val_00001.png");
  expect_clean_error(r, {"cannot write", (out / "images" / "val_00001.png").string(), "No space left on device"});
  EXPECT_EQ(contents(out), before);
  EXPECT_TRUE(test::stages_beside(out).empty()) << test::stages_beside(out).front();
}

// nonlocal holds two N x N maps: at 64x128 (N = 8192) 512 MiB, which 64 MiB cannot hold; ccnet's
// peak at that size is a few MiB. The refusal comes from the estimate, before any timing.
TEST(BenchMemory, ABlockWhoseEstimatedPeakExceedsTheLimitIsNotRunAndTheOthersAre) {
  BenchSettings s;
  s.blocks = {"nonlocal", "ccnet"};
  s.channels = 16;
  s.sizes = {{64, 128}};
  s.iters = 1;
  s.warmup = 0;
  s.max_memory_bytes = 64ll << 20;
  RuntimeSettings rs;
  rs.device = "cpu";
  rs.threads = 1;
  const BenchReport report = bench_blocks(s, start_runtime(rs));
  ASSERT_EQ(report.blocks.size(), 1u);
  EXPECT_EQ(report.blocks[0].block, "ccnet");
  ASSERT_EQ(report.refused.size(), 1u);
  EXPECT_NE(report.refused[0].find("nonlocal at 64x128: estimated peak memory"), std::string::npos) << report.refused[0];
  EXPECT_NE(report.refused[0].find("exceeds the 0.07 GB --max-memory allows"), std::string::npos) << report.refused[0];
}

// The estimate against the measurement at a size that fits: nonlocal's N x N maps dominate, and
// the estimate extrapolated from the sizes 2 and 4 times smaller per side lands within 25% of
// the measured peak.
TEST(BenchMemory, ThePeakEstimateOfNonLocalIsWithinAQuarterOfTheMeasuredPeak) {
  RuntimeSettings rs;
  rs.device = "cpu";
  rs.threads = 1;
  const Runtime runtime = start_runtime(rs);
  const BenchSubject subject = block_subject("nonlocal", build_block("nonlocal", 16), 16);
  const std::array<int64_t, 2> size{45, 83};
  const PeakEstimate e = estimate_peak(subject, 1, size, false, runtime, 1e12);
  ASSERT_GE(e.measured.size(), 2u);
  const at::Tensor x = at::randn({1, 16, size[0], size[1]});
  const SizeResult measured = bench_input(subject, x, 0, 1, false, runtime);
  const double n = 45.0 * 83.0, maps = 2 * n * n * 4;  // logits and softmax in float
  EXPECT_GT(static_cast<double>(measured.peak_bytes), maps) << "the two maps are part of the peak";
  EXPECT_NEAR(e.bytes / static_cast<double>(measured.peak_bytes), 1.0, 0.25)
      << "estimate " << e.bytes << " exponent " << e.exponent << ", measured " << measured.peak_bytes;
}

TEST_F(Faults, BenchRefusesInOneLineWhenNothingFitsTheMemoryLimit) {
  const auto r = run_attnseg("bench --blocks nonlocal --channels 16 --sizes 64x128 --iters 1 --max-memory 64");
  expect_clean_error(r, {"nonlocal at 64x128", "estimated peak memory", "--max-memory"});
}

// The last iteration metrics.jsonl has logged (0 when none); lines cut short are skipped.
int64_t last_logged(const fs::path& metrics) {
  int64_t last = 0;
  std::istringstream in(read_file(metrics));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("iter")) last = j["iter"].get<int64_t>();
  }
  return last;
}

// The soak: one training killed 20 times, at chosen points inside checkpoint, last_checkpoint
// and metrics writes, and otherwise once it has logged a random 1-4 iterations beyond where
// the previous run got; resumed after each kill. It ends with the losses of the run that was
// never killed, each resume starts at most one checkpoint interval behind the last logged
// iteration, and nothing half-written is left.
TEST_F(Faults, TwentyKillsDuringOneTrainingEachResumedEndAtTheUninterruptedRunsLosses) {
  const std::string schedule = "train.iters=120 train.checkpoint_interval=4 train.keep_checkpoints=2";
  ASSERT_EQ(run_attnseg(train("full", schedule)).exit_code, 0);
  const auto full = losses(dir / "full/metrics.jsonl");
  ASSERT_EQ(full.size(), 120u);

  // Kill points: between writing the temporary file and renaming it, of the n-th checkpoint,
  // of last_checkpoint, and of the metrics rewrite a resume starts with.
  const std::vector<std::string> points{"commit:.pt:1",           "commit:last_checkpoint:1", "commit:.pt:2",
                                        "commit:metrics.jsonl:1", "commit:last_checkpoint:2", "commit:.pt:1"};
  std::mt19937 random(20261130);
  std::uniform_int_distribution<int64_t> further(1, 4);
  const fs::path work = dir / "soak", metrics = work / "metrics.jsonl";
  int kills = 0, attempts = 0;
  while (kills < 20 && attempts++ < 40) {
    const int64_t logged = last_logged(metrics);
    const fs::path log = dir / ("run" + std::to_string(attempts) + ".log");
    const bool at_point = static_cast<size_t>(kills) < points.size();
    const pid_t pid = test::spawn_attnseg(train("soak", "--resume " + schedule), log,
                                          at_point ? "ATTNSEG_KILL_AT=" + points[kills] : "");
    ASSERT_GT(pid, 0);
    int status = 0;
    if (!at_point) {
      const int64_t target = logged + further(random);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
      while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (last_logged(metrics) >= target || std::chrono::steady_clock::now() > deadline) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // polling the log, not waiting a guess
      }
    } else {
      ::waitpid(pid, &status, 0);
    }
    const std::string out = read_file(log);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;  // it finished first: no kill
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << out;
    ++kills;
    std::smatch m;
    const std::regex resumed("resumed from .*iter_[0-9]+\\.pt at iteration ([0-9]+)");
    const int64_t start = std::regex_search(out, m, resumed) ? std::stoll(m[1].str()) : 0;
    EXPECT_LE(logged - start, 4) << "logged " << logged << ", resumed at " << start << ":\n" << out;
  }
  ASSERT_EQ(kills, 20) << "runs kept finishing before their kill";
  const auto last = run_attnseg(train("soak", "--resume " + schedule));
  ASSERT_EQ(last.exit_code, 0) << last.output;
  const auto soaked = losses(metrics);
  ASSERT_EQ(soaked.size(), 120u);
  for (const auto& [it, loss] : full) EXPECT_EQ(soaked.at(it), loss) << "iteration " << it;
  EXPECT_TRUE(temporaries_in(work).empty()) << temporaries_in(work).front();
  EXPECT_EQ(checkpoint_names(work), (std::vector<std::string>{"iter_116.pt", "iter_120.pt"}));
  EXPECT_EQ(read_file(work / "last_checkpoint"), "iter_120.pt\n");
}

}  // namespace
}  // namespace attnseg
