// The executable as a user meets it: every bad input ends with one "error:" line naming the
// file or key and a non-zero exit; and a smoke run of synth, train and eval.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/core/version.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <poll.h>
#include <torch/version.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <regex>

#include "attention/registry.h"
#include "data/dataset_types.h"
#include "engine/distributed.h"
#include "test_util.h"
#include "test_video.h"

namespace attnseg {
namespace {

using test::expect_clean_error;
using test::Npy;
using test::read_file;
using test::read_npy;
using test::read_video;
using test::run_attnseg;
using test::TempDir;
using test::tiny_config;
using test::write_file;
using test::write_test_video;
namespace fs = std::filesystem;


class Cli : public test::TinyDataTest {
 protected:
  std::string work(const std::string& name) { return "--work-dir '" + (dir / name).string() + "'"; }
};

TEST_F(Cli, SmokeTrainThenEvaluate) {
  auto r = run_attnseg("train " + config() + " " + work("run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "run/iter_4.pt"));
  EXPECT_TRUE(fs::exists(dir / "run/config.yaml"));
  const fs::path json = dir / "eval.json";
  r = run_attnseg("eval " + config() + " --checkpoint '" + (dir / "run/iter_4.pt").string() + "' --json '" +
                  json.string() + "' --show-dir '" + (dir / "show").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("mIoU"), std::string::npos);
  EXPECT_NE(r.output.find("disc_warm"), std::string::npos);
  EXPECT_NE(r.output.find("FPS"), std::string::npos);
  const auto j = nlohmann::json::parse(read_file(json));
  EXPECT_EQ(j["images"].get<int>(), 3);
  EXPECT_EQ(j["classes"].size(), 6u);
  EXPECT_GT(j["speed"]["median_ms"].get<double>(), 0);
  EXPECT_EQ(j["speed"]["height"].get<int>(), 32);
  EXPECT_EQ(j["speed"]["width"].get<int>(), 192);
  EXPECT_TRUE(fs::exists(dir / "show/val_00002.png"));
}

// The speed line times one forward; an inference of several forwards (flip, two ratios: four)
// is also timed whole, and only then.
TEST_F(Cli, EvalTimesTheWholeInferenceBesideOneForwardOnlyWhenItMakesSeveralForwards) {
  ASSERT_EQ(run_attnseg("train " + config() + " " + work("run")).exit_code, 0);
  const fs::path one = dir / "one.json", four = dir / "four.json";
  const std::string run_dir = " '" + (dir / "run").string() + "'";
  const auto whole = run_attnseg("eval" + run_dir + " --json '" + one.string() + "'");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  EXPECT_EQ(whole.output.find("inference as evaluated"), std::string::npos) << whole.output;
  EXPECT_TRUE(nlohmann::json::parse(read_file(one))["inference_speed"].is_null());
  const auto views = run_attnseg("eval" + run_dir + " --json '" + four.string() +
                                 "' eval.flip=true eval.scales=[0.5,1]");
  ASSERT_EQ(views.exit_code, 0) << views.output;
  EXPECT_NE(views.output.find("speed at 32x192, batch 1"), std::string::npos) << views.output;
  EXPECT_NE(views.output.find("inference as evaluated, 4 forwards per 32x192 image: median "), std::string::npos)
      << views.output;
  const auto j = nlohmann::json::parse(read_file(four))["inference_speed"];
  EXPECT_EQ(j["forwards"].get<int>(), 4);
  EXPECT_EQ(j["height"].get<int>(), 32);
  EXPECT_EQ(j["width"].get<int>(), 192);
  EXPECT_GT(j["median_ms"].get<double>(), 0);
  EXPECT_NEAR(j["images_per_s"].get<double>(), 1000.0 / j["median_ms"].get<double>(), 1e-6);
}

// The first line a command that computes logs: device, precision, threads, LibTorch.
std::string first_line(const std::string& output) { return output.substr(0, output.find('\n')); }

TEST_F(Cli, TrainEvalAndBenchNameTheirRuntimeFirst) {
  const auto train = run_attnseg("train " + config() + " " + work("run") + " runtime.precision=bf16");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  EXPECT_NE(first_line(train.output).find("info train: device cpu, precision bf16, 1 thread, LibTorch "),
            std::string::npos)
      << train.output;
  const auto eval = run_attnseg("eval " + config() + " --checkpoint '" + (dir / "run/iter_4.pt").string() + "'");
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_NE(first_line(eval.output).find("info eval: device cpu, precision fp32, 1 thread"), std::string::npos)
      << eval.output;
  EXPECT_NE(eval.output.find("speed at 32x192, batch 1, cpu fp32, 1 threads"), std::string::npos) << eval.output;
  const auto bench = run_attnseg("bench --blocks none --sizes 4x4 --iters 1 --threads 1 --precision bf16");
  ASSERT_EQ(bench.exit_code, 0) << bench.output;
  EXPECT_NE(first_line(bench.output).find("info bench: device cpu, precision bf16, 1 thread"), std::string::npos)
      << bench.output;
}

// Asking for a GPU where there is none, or for a precision or device a block cannot run,
// ends in one line naming the key before anything is written.
TEST_F(Cli, AnUnavailableDeviceOrABlockTheRuntimeCannotRunWritesNothing) {
  if (run_attnseg("bench --blocks none --sizes 4x4 --iters 1 --device cuda").exit_code == 0) {
    GTEST_SKIP() << "a GPU is present";
  }
  expect_clean_error(run_attnseg("train " + config() + " " + work("cuda") + " runtime.device=cuda"),
                     {"runtime.device", "cuda", "no CUDA device"});
  EXPECT_FALSE(fs::exists(dir / "cuda"));
  expect_clean_error(run_attnseg("bench --blocks ccnet --sizes 4x4 --device cuda:0"), {"--device", "no CUDA device"});
  expect_clean_error(run_attnseg("train " + config() + " " + work("fp16") + " runtime.precision=fp16"),
                     {"runtime.precision", "fp16", "CUDA"});
  EXPECT_FALSE(fs::exists(dir / "fp16"));
  expect_clean_error(run_attnseg("bench --blocks permutohedral --sizes 4x4 --device cuda"), {"no CUDA device"});
}

// One row per registered block, in the registry's order, each with its family, paper,
// complexity and parameter count at the default 256 channels, and the devices and precisions
// its capability flags declare. Columns are padded to a common width: a row's fields start
// where the header's names do.
TEST_F(Cli, ListShowsEveryBlockWithTheDevicesAndPrecisionsItsCapabilitiesDeclare) {
  const auto r = run_attnseg("list");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  std::string header;
  while (std::getline(lines, header) && header.rfind("name ", 0) != 0) {}  // past any log line
  ASSERT_EQ(header.rfind("name ", 0), 0u) << r.output;
  const std::vector<std::string> columns{"name", "family", "paper", "complexity", "params@C=256",
                                         "devices", "precisions", "options (defaults)"};
  std::vector<size_t> start;
  for (const auto& column : columns) {
    start.push_back(header.find(column));
    ASSERT_NE(start.back(), std::string::npos) << column << " in " << header;
  }
  auto field = [&](const std::string& row, size_t i) {
    const size_t end = i + 1 < start.size() ? start[i + 1] : row.size();
    std::string f = row.substr(start[i], end - start[i]);
    const size_t first = f.find_first_not_of(' '), last = f.find_last_not_of(' ');
    return first == std::string::npos ? std::string() : f.substr(first, last - first + 1);
  };
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] != '[') rows.push_back(line);  // not a log line
  }
  const auto& registry = block_registry();
  ASSERT_EQ(rows.size(), registry.size()) << r.output;
  for (size_t b = 0; b < registry.size(); ++b) {
    const BlockSpec& spec = registry[b];
    const std::string& row = rows[b];
    ASSERT_GE(row.size(), start[7]) << row;
    EXPECT_EQ(field(row, 0), spec.name) << row;
    EXPECT_EQ(field(row, 1), spec.family) << row;
    EXPECT_EQ(field(row, 2), spec.paper) << row;
    EXPECT_EQ(field(row, 3), spec.complexity) << row;
    EXPECT_EQ(field(row, 4), std::to_string(count_parameters(*build_block(spec.name, 256)))) << row;
    EXPECT_EQ(field(row, 5), spec.caps.cuda ? "cpu,cuda" : "cpu") << row;
    std::vector<std::string> precisions{"fp32"};
    if (spec.caps.bf16) precisions.push_back("bf16");
    if (spec.caps.fp16) precisions.push_back("fp16");
    std::string declared;
    for (const auto& p : precisions) declared += (declared.empty() ? "" : ",") + p;
    EXPECT_EQ(field(row, 6), declared) << row;
    const std::string defaults = spec.defaults(256);
    EXPECT_EQ(field(row, 7), defaults.empty() ? "-" : defaults) << row;
  }
}

TEST_F(Cli, WarnsWhenTheReferenceBlasIsInUse) {
  // tools/setup.sh installs it (libblas3): the warning the README promises is tested wherever the suite runs.
  const std::string reference = "/usr/lib/" ATTNSEG_LIBRARY_ARCHITECTURE "/blas/libblas.so.3";
  ASSERT_TRUE(fs::exists(reference)) << "Debian's reference BLAS (libblas3, which tools/setup.sh installs) is missing: "
                                     << reference;
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer must be the first library loaded; LD_PRELOAD breaks that";
#endif
  const auto slow = run_attnseg("list", "LD_PRELOAD=" + reference);
  ASSERT_EQ(slow.exit_code, 0) << slow.output;
  EXPECT_NE(slow.output.find("BLAS in use is the reference implementation"), std::string::npos) << slow.output;
  const auto normal = run_attnseg("list");
  EXPECT_EQ(normal.output.find("BLAS in use is the reference implementation"), std::string::npos) << normal.output;
}

// The binary pins OpenBLAS's kernel family (core/runtime.h, pin_blas_kernels): without
// OPENBLAS_CORETYPE, OpenBLAS, asked to say which kernels it loads, says it twice, first what it
// detected, then Haswell after the re-execution; a family the user chose is loaded once and kept.
TEST_F(Cli, OpenBlasKernelsArePinnedToHaswellUnlessTheUserChoseAFamily) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) GTEST_SKIP() << "no AVX2 and FMA";
#else
  GTEST_SKIP() << "not x86-64";
#endif
  const auto cores = [](const std::string& output) {
    std::vector<std::string> found;
    for (size_t at = output.find("Core: "); at != std::string::npos; at = output.find("Core: ", at + 1)) {
      found.push_back(output.substr(at + 6, output.find('\n', at) - at - 6));
    }
    return found;
  };
  const auto pinned = run_attnseg("list", "env -u OPENBLAS_CORETYPE OPENBLAS_VERBOSE=2");
  ASSERT_EQ(pinned.exit_code, 0) << pinned.output;
  const auto loaded = cores(pinned.output);
  if (loaded.empty()) GTEST_SKIP() << "the BLAS in use is not OpenBLAS with runtime kernel choice";
  ASSERT_EQ(loaded.size(), 2u) << pinned.output;
  EXPECT_EQ(loaded.back(), "Haswell") << pinned.output;
  const auto chosen = run_attnseg("list", "OPENBLAS_VERBOSE=2 OPENBLAS_CORETYPE=Sandybridge");
  EXPECT_EQ(cores(chosen.output), std::vector<std::string>{"Sandybridge"}) << chosen.output;
}

TEST_F(Cli, VersionNamesTheProjectsReleaseAndWhatTheBuildWasMadeWith) {
  // The release is the one CMakeLists.txt's project() declares.
  std::smatch project;
  const std::string cmake = read_file(ATTNSEG_SOURCE_DIR "/CMakeLists.txt");
  ASSERT_TRUE(std::regex_search(cmake, project, std::regex(R"(project\(attnseg VERSION ([0-9.]+))")));
  const auto r = run_attnseg("--version");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string c10d = distributed_available() ? (nccl_available() ? "Gloo, NCCL" : "Gloo")
                                                   : (nccl_available() ? "NCCL" : "none");
#ifdef ATTNSEG_WITH_CUDA
  const std::string built = "with CUDA";
#else
  const std::string built = "CPU only";
#endif
  EXPECT_EQ(r.output, "attnseg " + project[1].str() + " (LibTorch " + TORCH_VERSION + ", OpenCV " + CV_VERSION +
                          ", " + built + ", c10d: " + c10d + ")\n");
}

TEST_F(Cli, MissingConfig) {
  expect_clean_error(run_attnseg("train /nonexistent/x.yaml " + work("w")), {"/nonexistent/x.yaml"});
}

TEST_F(Cli, MalformedYaml) {
  write_file(dir / "bad.yaml", "model: {attention: [oops\n");
  expect_clean_error(run_attnseg("train '" + (dir / "bad.yaml").string() + "' " + work("w")),
                     {"malformed YAML", "bad.yaml"});
}

TEST_F(Cli, UnknownKey) {
  expect_clean_error(run_attnseg("train " + config() + " " + work("w") + " train.iterz=3"),
                     {"'train.iterz'", "command line", "iters"});
}

TEST_F(Cli, UnknownKeyInAFileNamesTheFile) {
  write_file(dir / "typo.yaml", "_base_: ccnet.yaml\nmodel: {head: {chanels: 8}}\n");
  config();
  expect_clean_error(run_attnseg("train '" + (dir / "typo.yaml").string() + "' " + work("w")),
                     {"'model.head.chanels'", "typo.yaml", "channels"});
}

TEST_F(Cli, WrongType) {
  expect_clean_error(run_attnseg("train " + config() + " " + work("w") + " train.lr=fast"),
                     {"'train.lr'", "a number", "'fast'"});
}

TEST_F(Cli, UnknownBlock) {
  expect_clean_error(run_attnseg("train " + config() + " " + work("w") + " model.attention.type=magic"),
                     {"'magic'", "model.attention.type", "none, nonlocal, ccnet"});
}

TEST_F(Cli, ZeroAndNegativeSizes) {
  expect_clean_error(run_attnseg("synth --out '" + (dir / "s").string() + "' --size 0"), {"--size"});
  expect_clean_error(run_attnseg("synth --out '" + (dir / "s").string() + "' --train -3"), {"--train"});
  expect_clean_error(run_attnseg("train " + config() + " " + work("w") + " 'data.train_pipeline.crop_size=[32, 0]'"),
                     {"data.train_pipeline.crop_size"});
}

TEST_F(Cli, MissingDatasetRoot) {
  expect_clean_error(run_attnseg("train " + config() + " " + work("w") + " data.root=/nonexistent/data"),
                     {"/nonexistent/data"});
}

TEST_F(Cli, CorruptImageEndsTrainingCleanly) {
  // A private copy of the data whose images are all corrupt: the first batch meets one.
  fs::copy(data_->path(), dir / "data", fs::copy_options::recursive);
  write_file(dir / "c.yaml", tiny_config(dir / "data"));
  for (int i = 0; i < 8; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "images/train_%05d.png", i);
    write_file(dir / "data" / name, "garbage");
  }
  const auto r = run_attnseg("train '" + (dir / "c.yaml").string() + "' " + work("w"));
  expect_clean_error(r, {"cannot read image", "train_0000"});
  EXPECT_FALSE(fs::exists(dir / "w/iter_2.pt"));
}

TEST_F(Cli, CheckpointFromAnotherModel) {
  auto r = run_attnseg("train " + config("none") + " " + work("none") + " train.iters=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_attnseg("eval " + config("ccnet") + " --checkpoint '" + (dir / "none/iter_1.pt").string() + "'");
  expect_clean_error(r, {"iter_1.pt", "another model"});
}

TEST_F(Cli, MissingCheckpoint) {
  expect_clean_error(run_attnseg("eval " + config() + " --checkpoint '" + (dir / "nope.pt").string() + "'"),
                     {"nope.pt"});
}

TEST_F(Cli, BenchRejectsUnknownOrRepeatedBlocksAndMalformedSizes) {
  expect_clean_error(run_attnseg("bench --blocks ccnet,nonlokal"), {"nonlokal", "--blocks", "accepted"});
  expect_clean_error(run_attnseg("bench --blocks ,"), {"--blocks"});
  expect_clean_error(run_attnseg("bench --blocks ccnet,none,ccnet --sizes 4x4"), {"--blocks", "ccnet is named twice"});
  expect_clean_error(run_attnseg("bench --blocks ccnet --sizes 32x64,48"), {"--sizes", "'48'"});
  // A size the block cannot split: axial's 8 heads need channels divisible by 8.
  expect_clean_error(run_attnseg("bench --blocks axial --channels 12 --sizes 5x7"), {"axial", "12", "divisible"});
}

TEST_F(Cli, BenchPrintsOneRowPerBlock) {
  const auto r = run_attnseg("bench --blocks none,ccnet --channels 16 --sizes 5x7,9x11 --iters 2 --warmup 0 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\nnone "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\nccnet "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("9x11 ms"), std::string::npos) << r.output;
}

TEST_F(Cli, BenchWritesCsvAndTimesBackwardWhenAsked) {
  const auto csv = dir / "bench.csv";
  const auto r = run_attnseg("bench --blocks ccnet --channels 16 --sizes 5x7 --iters 2 --warmup 0 --threads 1 --backward --csv '" +
                             csv.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("fwd+bwd ms"), std::string::npos) << r.output;
  std::ifstream in(csv);
  std::string header, row;
  ASSERT_TRUE(std::getline(in, header)) << csv;
  ASSERT_TRUE(std::getline(in, row));
  EXPECT_EQ(row.rfind("ccnet,", 0), 0u) << row;
}

// Before, eval --json and bench --json/--csv found out that they could not write the report
// after the whole evaluation or every timing (minutes on a real dataset or a GPU sweep of blocks).
TEST_F(Cli, AReportOrOverlayPathThatCannotBeWrittenIsRefusedBeforeAnythingIsComputed) {
  ASSERT_EQ(run_attnseg("train " + config() + " " + work("run") + " train.iters=1").exit_code, 0);
  const std::string checkpoint = " --checkpoint '" + (dir / "run/iter_1.pt").string() + "'";
  fs::create_directories(dir / "taken");
  write_file(dir / "plain.txt", "a file, not a folder");
  const std::string bench = "bench --blocks ccnet --channels 16 --sizes 5x7 --iters 1 --warmup 0 --no-erf ";
  struct Case {
    std::string command, flag, path;
  };
  for (const Case& c : {Case{"eval " + config() + checkpoint + " --json ", "--json", (dir / "taken").string()},
                        Case{"eval " + config() + checkpoint + " --json ", "--json", (dir / "plain.txt/e.json").string()},
                        Case{bench + "--json ", "--json", (dir / "taken").string()},
                        Case{bench + "--csv ", "--csv", (dir / "plain.txt/b.csv").string()}}) {
    const auto r = run_attnseg(c.command + "'" + c.path + "'");
    expect_clean_error(r, {c.flag + " " + c.path});
    EXPECT_EQ(r.output.find("mIoU"), std::string::npos) << "evaluated first: " << r.output;
    EXPECT_EQ(r.output.find("\nccnet "), std::string::npos) << "timed first: " << r.output;
  }
  // eval's overlay folder under a file: named with the reason before any image is segmented
  const auto r = run_attnseg("eval " + config() + checkpoint + " --show-dir '" + (dir / "plain.txt/show").string() + "'");
  expect_clean_error(r, {"cannot create the overlay directory " + (dir / "plain.txt/show").string() + ": Not a directory"});
  EXPECT_EQ(r.output.find("mIoU"), std::string::npos) << "evaluated first: " << r.output;
  EXPECT_TRUE(fs::is_directory(dir / "taken"));
  EXPECT_EQ(read_file(dir / "plain.txt"), "a file, not a folder");
}

TEST_F(Cli, AReportInAFolderThatIsNotThereYetIsWrittenWithItsFolders) {
  ASSERT_EQ(run_attnseg("train " + config() + " " + work("run") + " train.iters=1").exit_code, 0);
  auto r = run_attnseg("eval " + config() + " --checkpoint '" + (dir / "run/iter_1.pt").string() + "' --json '" +
                       (dir / "new/deeper/eval.json").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "new/deeper/eval.json"))["images"].get<int>(), 3);
  r = run_attnseg("bench --blocks ccnet --channels 16 --sizes 5x7 --iters 1 --warmup 0 --no-erf --csv '" +
                  (dir / "other/b.csv").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(dir / "other/b.csv").rfind("block,", 0), 0u) << read_file(dir / "other/b.csv");
}

TEST_F(Cli, SweepWritesTheLeaderboardWithSeedsAndBothPictures) {
  const auto r = run_attnseg("sweep " + config() + " --blocks none,ccnet --seeds 2 --rounds 1 --iters 2 " + work("sweep"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(first_line(r.output).find("info sweep: device cpu, precision fp32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| none | "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| ccnet | "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" ± "), std::string::npos) << r.output;
  // Off a terminal, each run's training progress is logged with its place in the sweep and
  // the estimated end of the sweep's training; the last run ends at its last iteration.
  EXPECT_NE(r.output.find("info none seed 0 (1/4) iter "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("info ccnet seed 1 (4/4) iter 4/4 (100%)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(", sweep 0:"), std::string::npos) << r.output;
  for (const char* run : {"none/seed0", "none/seed1", "ccnet/seed0", "ccnet/seed1"}) {
    EXPECT_TRUE(fs::exists(dir / "sweep" / run / "eval.json")) << run;
  }
  // The two seeds trained differently seeded models: their configs differ in train.seed only.
  EXPECT_NE(read_file(dir / "sweep/ccnet/seed0/config.yaml"), read_file(dir / "sweep/ccnet/seed1/config.yaml"));
  std::istringstream csv(read_file(dir / "sweep/leaderboard.csv"));
  std::string header, line;
  std::getline(csv, header);
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    EXPECT_NE(line.find(",2,"), std::string::npos) << "two seeds: " << line;
  }
  EXPECT_EQ(rows, 2);
  EXPECT_EQ(read_file(dir / "sweep/leaderboard.md").find("Leaderboard: "), 0u);
  for (const char* png : {"sweep/leaderboard.png", "sweep/scaling.png"}) {
    EXPECT_FALSE(cv::imread((dir / png).string()).empty()) << png;
  }
}

// `attnseg <args>` started in the background, its output (stdout and stderr) on a pipe.
struct Background {
  pid_t pid = -1;
  int output = -1;  // the pipe's read end
};

Background start_attnseg(const std::string& args) {
  Background b;
  int fds[2];
  if (::pipe(fds) != 0) {
    ADD_FAILURE() << "pipe";
    return b;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  const std::string command = "cd '" ATTNSEG_SOURCE_DIR "' && exec '" ATTNSEG_BINARY "' " + args;
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  EXPECT_EQ(posix_spawn(&b.pid, "/bin/sh", &actions, nullptr, const_cast<char* const*>(argv), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  b.output = fds[0];
  return b;
}

// Reads `fd` into `log` until a complete line holds every one of `parts` (true), or the
// output ends (false). A wait of `patience` without any output counts as an end, so that a
// hung process fails the test instead of stalling it.
bool read_until_line(int fd, const std::vector<std::string>& parts, std::string& log,
                     std::chrono::milliseconds patience) {
  size_t scanned = 0;
  char buf[4096];
  for (;;) {
    for (size_t nl; (nl = log.find('\n', scanned)) != std::string::npos; scanned = nl + 1) {
      const std::string line = log.substr(scanned, nl - scanned);
      if (std::all_of(parts.begin(), parts.end(), [&](const std::string& p) { return line.find(p) != std::string::npos; })) {
        return true;
      }
    }
    pollfd ready{fd, POLLIN, 0};
    if (::poll(&ready, 1, static_cast<int>(patience.count())) <= 0) return false;
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    log.append(buf, static_cast<size_t>(n));
  }
}

TEST_F(Cli, SweepResumesAfterAKillWithoutRetrainingFinishedBlocks) {
  const std::string args = "sweep " + config() + " --blocks none,ccnet --rounds 1 --iters 2 " + work("sweep") +
                           " train.iters=300 train.checkpoint_interval=100";
  const fs::path first_eval = dir / "sweep/none/seed0/eval.json";
  const Background first = start_attnseg(args);
  // Killed as the sweep reports that the second block starts training: the first is then
  // finished (its eval.json written before the sweep moves on) and the second is not.
  std::string log;
  const bool second_started =
      read_until_line(first.output, {"ccnet seed 0: training in"}, log, std::chrono::minutes(5));
  ASSERT_EQ(::kill(first.pid, SIGKILL), 0);
  int status = 0;
  ::waitpid(first.pid, &status, 0);
  ::close(first.output);
  ASSERT_TRUE(second_started) << log;
  ASSERT_TRUE(fs::exists(first_eval)) << log;
  ASSERT_FALSE(fs::exists(dir / "sweep/ccnet/seed0/eval.json")) << "killed too late: " << log;
  ASSERT_FALSE(fs::exists(dir / "sweep/leaderboard.csv"));
  const std::string first_metrics = read_file(dir / "sweep/none/seed0/metrics.jsonl");
  const auto first_time = fs::last_write_time(first_eval);

  const auto r = run_attnseg(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("none seed 0: finished earlier"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not retrained"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("none seed 0: training"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(dir / "sweep/none/seed0/metrics.jsonl"), first_metrics);
  EXPECT_EQ(fs::last_write_time(first_eval), first_time);
  EXPECT_TRUE(fs::exists(dir / "sweep/ccnet/seed0/eval.json"));
  EXPECT_TRUE(fs::exists(dir / "sweep/leaderboard.png"));
  // No half-written files were left behind by the kill.
  for (const auto& entry : fs::recursive_directory_iterator(dir / "sweep")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

TEST_F(Cli, SweepRejectsBadInputBeforeTraining) {
  expect_clean_error(run_attnseg("sweep " + config() + " --blocks none,nonlokal " + work("s1")), {"nonlokal", "--blocks"});
  expect_clean_error(run_attnseg("sweep " + config() + " --blocks , " + work("s2")), {"--blocks"});
  expect_clean_error(run_attnseg("sweep " + config() + " --blocks none,none " + work("s2")),
                     {"--blocks", "none is named twice"});
  expect_clean_error(run_attnseg("sweep " + config() + " --blocks none --seeds 0 " + work("s2")), {"--seeds", "1 to"});
  expect_clean_error(run_attnseg("sweep " + config() + " --blocks none " + work("s3") + " train.iterz=3"), {"train.iterz"});
  EXPECT_FALSE(fs::exists(dir / "s3/none"));
  // A work directory holding runs of another config is not mixed into this leaderboard.
  ASSERT_EQ(run_attnseg("sweep " + config() + " --blocks none --rounds 1 --iters 1 " + work("s4")).exit_code, 0);
  expect_clean_error(run_attnseg("sweep " + config() + " --blocks none --rounds 1 --iters 1 " + work("s4") + " train.iters=6"),
                     {"another config", "s4"});
  // Keys that only say how a finished run is reported are not another config: the run is reused.
  const auto r = run_attnseg("sweep " + config() + " --blocks none --rounds 1 --iters 1 " + work("s4") +
                             " eval.cue_classes=[beacon_warm] eval.learned_iou=50");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("not retrained"), std::string::npos) << r.output;
  // Nor are the options of blocks the run does not use (read and checked, never built).
  const auto other = run_attnseg("sweep " + config() + " --blocks none --rounds 1 --iters 1 " + work("s4") +
                                 " model.attention.ccnet.recurrence=1");
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("not retrained"), std::string::npos) << other.output;
}

// A sweep kept as its reports only (README, "Recorded runs": config.yaml, eval.json,
// metrics.jsonl per run, no checkpoint) still gives its leaderboard, nothing retrained, each
// model timed at its initial weights and said so.
TEST_F(Cli, SweepOfRunsKeptWithoutCheckpointsIsNotRetrainedAndSaysItsModelsAreTimedAtInitialWeights) {
  const std::string args = "sweep " + config() + " --blocks ccnet --rounds 1 --iters 1 " + work("kept") +
                           " train.iters=4 train.checkpoint_interval=2";
  ASSERT_EQ(run_attnseg(args).exit_code, 0);
  const fs::path run = dir / "kept/ccnet/seed0";
  const std::string eval = read_file(run / "eval.json");
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(run)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".pt" || name == "last_checkpoint") removed += fs::remove(entry.path()) ? 1 : 0;
  }
  ASSERT_GE(removed, 2);
  const auto r = run_attnseg(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ccnet seed 0: finished earlier"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("note: ccnet: timed at its initial weights (no checkpoint in"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(run / "eval.json"), eval);
  EXPECT_FALSE(fs::exists(run / "iter_4.pt")) << "trained again";
}

TEST_F(Cli, SweepRunsEveryRegisteredBlock) {
  const auto r = run_attnseg("sweep " + config() + " --blocks all --rounds 1 --iters 1 " + work("all") + " train.iters=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream csv(read_file(dir / "all/leaderboard.csv"));
  std::string line;
  std::getline(csv, line);
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  const auto list = run_attnseg("list");
  int blocks = -1;  // the header line
  std::istringstream names(list.output);
  while (std::getline(names, line)) ++blocks;
  EXPECT_EQ(rows, blocks) << r.output;
}

TEST_F(Cli, BenchTimesAWholeModelFromItsConfig) {
  const auto json = dir / "model.json";
  const auto r = run_attnseg("bench --model " + config() + " --iters 2 --warmup 0 --threads 1 --backward --floor --json '" +
                             json.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("on [1, 3, H, W] images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("32x192 GMAC"), std::string::npos) << "the config's crop size: " << r.output;
  // The model's floor: at least its image and its weights in float, once.
  EXPECT_NE(r.output.find("floor ms: the larger of 2 x GMAC at "), std::string::npos) << r.output;
  const nlohmann::json report = nlohmann::json::parse(read_file(json));
  const auto& size = report["blocks"][0]["sizes"][0];
  EXPECT_GE(size["min_bytes"].get<int64_t>(), 4 * (3 * 32 * 192 + report["blocks"][0]["parameters"].get<int64_t>()));
  EXPECT_GT(size["floor_ms"].get<double>(), 0);
  EXPECT_NEAR(size["floor_ratio"].get<double>(), size["median_ms"].get<double>() / size["floor_ms"].get<double>(), 1e-9);
  expect_clean_error(run_attnseg("bench --model " + config() + " --blocks ccnet"), {"--model", "--blocks"});
}

TEST_F(Cli, DataCheckListsEveryPlantedDefect) {
  const fs::path root = dir / "data";
  fs::copy(data_->path(), root, fs::copy_options::recursive);
  std::string yaml = tiny_config(root, "ccnet");
  write_file(dir / "check.yaml", yaml);
  auto r = run_attnseg("data check '" + (dir / "check.yaml").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train.txt: 8 samples, 8 readable; image sizes all 192x32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("disc_warm"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no defects"), std::string::npos) << r.output;

  fs::remove(root / "images/train_00001.png");                                // missing
  write_file(root / "masks/train_00002.png", "not a png\n");                   // unreadable
  cv::imwrite((root / "masks/train_00003.png").string(), cv::Mat(16, 96, CV_8UC1, cv::Scalar(0)));  // mis-sized
  cv::imwrite((root / "masks/val_00001.png").string(), cv::Mat(32, 192, CV_8UC1, cv::Scalar(9)));   // label 9
  r = run_attnseg("data check '" + (dir / "check.yaml").string() + "'");
  EXPECT_NE(r.output.find("4 defects"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("image " + (root / "images/train_00001.png").string() + " does not exist"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("cannot read mask " + (root / "masks/train_00002.png").string()), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find((root / "masks/train_00003.png").string() + " is 96x16 but its image is 192x32"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find((root / "masks/val_00001.png").string() + " holds label 9"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train.txt: 8 samples, 5 readable"), std::string::npos) << r.output;
  expect_clean_error(r, {"data check", "4 defective"}, test::Report::kAllowed);
}

// A standard dataset end to end: a tiny Cityscapes tree as the archives unpack, trained,
// evaluated (the per-class table carries Cityscapes' names) and checked.
TEST_F(Cli, TrainEvaluateAndCheckACityscapesTree) {
  const fs::path root = dir / "cityscapes";
  const std::pair<const char*, const char*> files[] = {{"train", "aachen"}, {"train", "bochum"}, {"val", "lindau"}};
  int n = 0;
  for (const auto& [split, city] : files) {
    const std::string stem = std::string(city) + "_000000_0000" + std::to_string(10 + n++);
    const fs::path images = root / "leftImg8bit" / split / city, masks = root / "gtFine" / split / city;
    fs::create_directories(images);
    fs::create_directories(masks);
    cv::Mat image(32, 64, CV_8UC3, cv::Scalar(90, 60, 30)), ids(32, 64, CV_8UC1, cv::Scalar(7));  // road
    cv::rectangle(image, {20, 8}, {40, 24}, cv::Scalar(20, 20, 200), cv::FILLED);
    cv::rectangle(ids, {20, 8}, {40, 24}, cv::Scalar(26), cv::FILLED);  // car
    ids.row(0).setTo(0);                                                  // unlabeled: ignored
    cv::imwrite((images / (stem + "_leftImg8bit.png")).string(), image);
    cv::imwrite((masks / (stem + "_gtFine_labelIds.png")).string(), ids);
  }
  const fs::path cfg = dir / "cityscapes.yaml";
  write_file(cfg, "_base_: ['" ATTNSEG_SOURCE_DIR "/configs/_base_/models/r18_d8_cpu.yaml', '" ATTNSEG_SOURCE_DIR
                  "/configs/_base_/schedules/cpu_short.yaml']\n"
                  "model: {backbone: {width: 0.125}, head: {channels: 16}, aux_head: {channels: 16}}\n"
                  "data: {type: cityscapes, root: '" + root.string() + "', batch_size: 2, workers: 1,\n"
                  "       train_pipeline: {crop_size: [32, 64]}}\n"
                  "train: {iters: 2, warmup_iters: 1, checkpoint_interval: 2, log_interval: 1}\n"
                  "runtime: {threads: 1}\n"
                  "eval: {speed_warmup: 1, speed_runs: 2}\n");
  auto r = run_attnseg("train '" + cfg.string() + "' " + work("cs"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_attnseg("eval '" + cfg.string() + "' --checkpoint '" + (dir / "cs/iter_2.pt").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name : {"road", "car", "traffic sign", "bicycle"}) {
    EXPECT_NE(r.output.find(name), std::string::npos) << name << " in " << r.output;
  }
  // predict writes Cityscapes' labels as indexed PNGs (colour type 3) whose colours are the
  // palette entries of the classes the probabilities rank first
  const fs::path image = root / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000012_leftImg8bit.png";
  r = run_attnseg("predict '" + cfg.string() + "' --checkpoint '" + (dir / "cs/iter_2.pt").string() + "' --input '" +
                  image.string() + "' --out '" + (dir / "cs_pred").string() + "' --probabilities");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string png = read_file(dir / "cs_pred/labels/lindau_000000_000012_leftImg8bit.png");
  ASSERT_GT(png.size(), 26u);
  EXPECT_EQ(png[25], 3) << "not an indexed PNG";
  const cv::Mat shown = cv::imread((dir / "cs_pred/labels/lindau_000000_000012_leftImg8bit.png").string(), cv::IMREAD_COLOR);
  const Npy probs = read_npy(dir / "cs_pred/probabilities/lindau_000000_000012_leftImg8bit.npy");
  ASSERT_EQ(probs.shape, (std::vector<int64_t>{19, 32, 64}));
  const auto& palette = find_dataset_type("cityscapes", "test").palette;
  int64_t wrong = 0;
  for (int i = 0; i < 32 * 64; ++i) {
    int best = 0;
    for (int k = 1; k < 19; ++k) best = probs.values[k * 2048 + i] > probs.values[best * 2048 + i] ? k : best;
    const cv::Vec3b rgb = palette[best], bgr = shown.at<cv::Vec3b>(i / 64, i % 64);
    wrong += bgr != cv::Vec3b(rgb[2], rgb[1], rgb[0]);
  }
  EXPECT_EQ(wrong, 0);
  r = run_attnseg("data check '" + cfg.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cityscapes dataset"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train: 2 samples, 2 readable; image sizes all 64x32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("val: 1 samples"), std::string::npos) << r.output;
}

// --compare times the model as the demo ran it: with flip and two ratios, four forwards.
TEST_F(Cli, DemoCompareTimesEveryViewTheDemoInfers) {
  ASSERT_EQ(run_attnseg("train " + config() + " " + work("run")).exit_code, 0);
  write_test_video(dir / "in.avi", 3);
  const std::string demo = " --checkpoint '" + (dir / "run/iter_4.pt").string() + "' --source '" +
                           (dir / "in.avi").string() + "' --headless --compare 2 --output '" +
                           (dir / "out.avi").string() + "'";
  auto r = run_attnseg("demo " + config() + demo);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("bare ccnet model on the last frame, 2 runs with nothing else running: "),
            std::string::npos)
      << r.output;
  write_file(dir / "views.yaml", "_base_: '" + (dir / "ccnet.yaml").string() + "'\neval: {flip: true, scales: [0.5, 1]}\n");
  r = run_attnseg("demo '" + (dir / "views.yaml").string() + "'" + demo);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("bare ccnet model on the last frame (4 forwards: eval.mode, eval.flip, eval.scales), 2 "
                          "runs with nothing else running: "),
            std::string::npos)
      << r.output;
}

TEST_F(Cli, DemoHeadlessWritesEveryFrameAnnotated) {
  ASSERT_EQ(run_attnseg("train " + config() + " " + work("run")).exit_code, 0);
  const std::string model = config() + " --checkpoint '" + (dir / "run/iter_4.pt").string() + "'";
  write_test_video(dir / "in.avi", 12);
  const std::vector<cv::Mat> input = read_video(dir / "in.avi");
  ASSERT_EQ(input.size(), 12u);
  auto r = run_attnseg("demo " + model + " --source '" + (dir / "in.avi").string() + "' --headless --output '" +
                       (dir / "out.avi").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(first_line(r.output).find("info demo: device cpu, precision fp32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("showed 12 of 12 frames of 320x96"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(0 dropped)"), std::string::npos) << r.output;
  const std::vector<cv::Mat> output = read_video(dir / "out.avi");
  ASSERT_EQ(output.size(), input.size());
  for (size_t i = 0; i < output.size(); ++i) {
    EXPECT_EQ(output[i].size(), input[i].size());
    cv::Mat diff;
    cv::absdiff(output[i], input[i], diff);
    EXPECT_GT(cv::mean(diff)[0], 2.0) << "frame " << i << " carries no overlay";
  }
  r = run_attnseg("demo " + model + " --source '" + (dir / "in.avi").string() + "' --headless --max-frames 5 --output '" +
                  (dir / "five.mp4").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_video(dir / "five.mp4").size(), 5u);
  // a pinned pixel adds its influence map: ccnet's row and column through it, nothing else
  r = run_attnseg("demo " + model + " --source '" + (dir / "in.avi").string() +
                  "' --headless --point 250,70 --output '" + (dir / "point.avi").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<cv::Mat> pinned = read_video(dir / "point.avi");
  ASSERT_EQ(pinned.size(), output.size());
  cv::Mat diff;
  cv::absdiff(pinned[6], output[6], diff);
  cv::cvtColor(diff, diff, cv::COLOR_BGR2GRAY);
  EXPECT_GT(cv::mean(diff(cv::Rect(180, 66, 40, 4)))[0], 10.0) << "the clicked row is tinted";
  EXPECT_GT(cv::mean(diff(cv::Rect(248, 30, 4, 20)))[0], 10.0) << "the clicked column is tinted";
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

// The window under Xvfb, driven by xdotool as a person would: `s` saves, `n` switches to the
// second block, a click pins a pixel, and the saved views show the influence map of the
// click, a one-pass ccnet's row and column through it and nothing elsewhere.
TEST_F(Cli, DemoWindowSwitchesBlocksShowsTheClickedPixelsInfluenceAndSaves) {
  for (const char* tool : {"xvfb-run", "xdotool"}) {
    ASSERT_EQ(std::system((std::string("command -v ") + tool + " >/dev/null").c_str()), 0)
        << tool << " is missing: tools/setup.sh installs it";
  }
  auto write_config = [&](const std::string& block) {
    std::string yaml = tiny_config(data_->path(), block);
    const std::string type = "attention: {type: " + block + "}";
    yaml.replace(yaml.find(type), type.size(),
                 "attention: {type: " + block + ", ccnet: {recurrence: 1}}");
    write_file(dir / (block + "1.yaml"), yaml);
    return (dir / (block + "1.yaml")).string();
  };
  const std::string none = write_config("none"), ccnet = write_config("ccnet");
  ASSERT_EQ(run_attnseg("train '" + none + "' " + work("none")).exit_code, 0);
  ASSERT_EQ(run_attnseg("train '" + ccnet + "' " + work("ccnet")).exit_code, 0);
  {  // a still scene, so two views differ only by what the click adds
    cv::VideoWriter writer((dir / "still.avi").string(),
                           cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, cv::Size(320, 96));
    cv::Mat frame(96, 320, CV_8UC3, cv::Scalar(90, 90, 90));
    cv::circle(frame, {80, 48}, 14, cv::Scalar(255, 255, 255), cv::FILLED);
    for (int i = 0; i < 10; ++i) writer.write(frame);
  }
  const fs::path saves = dir / "saves", log = dir / "window.log";
  // No fixed pauses: every wait polls a condition (the view a key press saves, a saved view
  // that shows the click's influence), each bounded so that a demo which never gets there
  // fails the test instead of stalling it. A press before the first frame is shown saves
  // nothing and is repeated; one made before a switched block or the clicked pixel reaches
  // the screen saves the old picture, and the script saves again. The click is repeated too
  // (pinning the same pixel again changes nothing): once, in a CI run under load, the window
  // never received it.
  std::string script = R"SH(S='@SAVES@'; LOG='@LOG@'
views() { ls "$S" 2>/dev/null | grep -c -- "$1"; }
newest() { ls -t "$S"/$1 2>/dev/null | head -1; }
fail() { echo "$1" >>"$LOG"; kill $demo; exit 1; }
save() { n=$(views _view.png); xdotool key --window $w s; i=0
  while [ $(views _view.png) -le $n ]; do i=$((i+1)); [ $i -gt 50 ] && return 1; sleep 0.1; done; }
save_until() { t=0; while [ $(views "$1") -lt 1 ]; do save; t=$((t+1)); [ $t -gt 30 ] && return 1; done; return 0; }
'@BINARY@' demo '@NONE@' --checkpoint '@NONE_PT@' --blocks ccnet='@CCNET_PT@' --source '@STILL@' --loop --save-dir "$S" >"$LOG" 2>&1 &
demo=$!
w=$(timeout 120 xdotool search --sync --name 'attnseg demo' | head -1)
[ -n "$w" ] || fail 'no window'
save_until 'none_.*_view' || fail 'no view of none saved'
xdotool key --window $w n
save_until 'ccnet_.*_view' || fail 'no view of ccnet saved'
before=$(newest 'ccnet_*_view.png')
t=0; while :; do
  xdotool mousemove --window $w 750 210 click 1
  save || fail 'a key press saved nothing'
  compare -metric AE -extract 960x288+0+0 "$before" "$(newest 'ccnet_*_view.png')" null: 2>/dev/null
  [ $? -eq 1 ] && break
  t=$((t+1)); [ $t -gt 30 ] && fail 'no saved view after the click differs from the one before it'
done
xdotool key --window $w q; wait $demo; echo "demo exit $?" >>"$LOG"
)SH";
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"@SAVES@", saves.string()}, {"@LOG@", log.string()}, {"@BINARY@", ATTNSEG_BINARY},
           {"@NONE@", none}, {"@NONE_PT@", (dir / "none/iter_4.pt").string()},
           {"@CCNET_PT@", (dir / "ccnet/iter_4.pt").string()}, {"@STILL@", (dir / "still.avi").string()}}) {
    script.replace(script.find(from), from.size(), to);
  }
  write_file(dir / "drive.sh", script);
  const int status =
      std::system(("xvfb-run -a -s '-screen 0 1280x720x24' sh '" + (dir / "drive.sh").string() +
                   "' >'" + (dir / "xvfb.log").string() + "' 2>&1")
                      .c_str());
  const std::string output = read_file(log);
  ASSERT_EQ(status, 0) << output << read_file(dir / "xvfb.log");
  EXPECT_NE(output.find("demo exit 0"), std::string::npos) << output;

  std::vector<fs::path> none_views, ccnet_views;
  for (const auto& e : fs::directory_iterator(saves)) {
    const std::string name = e.path().filename().string();
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
    if (name.find("_view.png") == std::string::npos) continue;
    (name.rfind("none_", 0) == 0 ? none_views : ccnet_views).push_back(e.path());
    for (const char* part : {"_frame.png", "_mask.png"}) {
      const std::string sibling = name.substr(0, name.size() - 9) + part;
      EXPECT_TRUE(fs::exists(saves / sibling)) << sibling;
    }
  }
  ASSERT_GE(none_views.size(), 1u) << output;
  ASSERT_GE(ccnet_views.size(), 2u) << output;
  std::sort(ccnet_views.begin(), ccnet_views.end(), [](const fs::path& a, const fs::path& b) {
    return fs::last_write_time(a) < fs::last_write_time(b);  // in the order saved
  });
  const std::string first = none_views[0].filename().string();
  const cv::Mat mask = cv::imread(
      (saves / (first.substr(0, first.size() - 9) + "_mask.png")).string(), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(mask.size(), cv::Size(320, 96));
  double top = 0;
  cv::minMaxLoc(mask, nullptr, &top);
  EXPECT_LT(top, 6) << "class ids of the 6 classes";

  // the picture (320x96 shown 3 times larger) above the panel, before and after the click
  const cv::Mat before = cv::imread(ccnet_views.front().string()),
                after = cv::imread(ccnet_views.back().string());
  ASSERT_EQ(before.cols, 960);
  ASSERT_GT(before.rows, 288) << "a panel below the picture";
  cv::Mat diff;
  cv::absdiff(before(cv::Rect(0, 0, 960, 288)), after(cv::Rect(0, 0, 960, 288)), diff);
  cv::cvtColor(diff, diff, cv::COLOR_BGR2GRAY);
  // the click at window (750, 210) is frame pixel (250, 70): feature row 8 (window rows
  // 192-215) and column 31 (window columns 744-767)
  EXPECT_GT(cv::mean(diff(cv::Rect(300, 194, 300, 20)))[0], 10.0) << "the clicked row is tinted";
  EXPECT_GT(cv::mean(diff(cv::Rect(746, 10, 20, 150)))[0], 10.0) << "the clicked column is tinted";
  double off = 0;
  cv::minMaxLoc(diff(cv::Rect(0, 0, 700, 180)), nullptr, &off);
  EXPECT_EQ(off, 0.0) << "one criss-cross pass reaches nothing off the row and column";
}

TEST_F(Cli, DemoNamesEachBadSourceOrOutput) {
  ASSERT_EQ(run_attnseg("train " + config() + " " + work("run")).exit_code, 0);
  const std::string model = config() + " --checkpoint '" + (dir / "run/iter_4.pt").string() + "'";
  const std::string missing = (dir / "missing.avi").string();
  expect_clean_error(run_attnseg("demo " + model + " --source '" + missing + "' --headless --output '" +
                                 (dir / "o.avi").string() + "'"),
                     {"--source", "missing.avi"});
  write_file(dir / "text.avi", "not a video\n");
  expect_clean_error(run_attnseg("demo " + model + " --source '" + (dir / "text.avi").string() +
                                 "' --headless --output '" + (dir / "o.avi").string() + "'"),
                     {"--source", "text.avi"});
  write_test_video(dir / "in.avi", 2);
  expect_clean_error(run_attnseg("demo " + model + " --source '" + (dir / "in.avi").string() +
                                 "' --headless --output '" + (dir / "o.txt").string() + "'"),
                     {"--output", "o.txt"});
  const std::string in = " --source '" + (dir / "in.avi").string() + "'";
  const std::string out = " --headless --output '" + (dir / "o.avi").string() + "'";
  expect_clean_error(run_attnseg("demo " + model + " --source 7" + out), {"--source 7", "camera"});
  expect_clean_error(run_attnseg("demo " + model + " --source rtsp://127.0.0.1:9/none" + out),
                     {"--source rtsp://127.0.0.1:9/none", "stream"});
  expect_clean_error(run_attnseg("demo " + model + in, "env -u DISPLAY -u WAYLAND_DISPLAY"),
                     {"no display", "--headless"});
  expect_clean_error(run_attnseg("demo " + model + in, "env DISPLAY=:4711"),
                     {"cannot connect to the display DISPLAY=:4711", "--headless"});
  expect_clean_error(run_attnseg("demo " + model + in + " --headless --loop --output '" +
                                 (dir / "o.avi").string() + "'"),
                     {"--loop", "--max-frames"});
  expect_clean_error(run_attnseg("demo " + model + in + " --blocks nonlocal"),
                     {"--blocks", "nonlocal", "name=checkpoint"});
  expect_clean_error(run_attnseg("demo " + model + in + " --blocks bogus=x.pt"),
                     {"--blocks", "bogus"});
  expect_clean_error(
      run_attnseg("demo " + model + in + " --blocks ccnet=" + (dir / "run/iter_4.pt").string()),
      {"--blocks", "ccnet", "twice"});
  expect_clean_error(
      run_attnseg("demo " + model + in + out + " --blocks nonlocal=" + (dir / "run/iter_4.pt").string()),
      {"iter_4.pt", "another model"});
  expect_clean_error(
      run_attnseg("demo " + model + in + " --output '" + (dir / "o.avi").string() + "'"),
      {"--output", "--headless"});
  EXPECT_FALSE(fs::exists(dir / "o.avi"));
}

}  // namespace
}  // namespace attnseg
