#include "engine/sweep.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "attention/registry.h"
#include "core/atomic_file.h"
#include "core/work_dir_lock.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/checkpoint.h"
#include "engine/curves.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"
#include "engine/timing.h"
#include "engine/trainer.h"

namespace attnseg {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Run {
  std::string block;
  uint64_t seed = 0;
  fs::path dir;
  Config config;
  Experiment experiment;
  int64_t ordinal = 0;  // its place among the runs this sweep trains (1, 2, ...); 0: trained earlier
};

// Info-level lines of the trainer and evaluator would bury the sweep's own; they are kept
// for warnings while a run trains, unless the user asked for more (debug or trace).
class QuietRun {
 public:
  QuietRun() : level_(spdlog::default_logger()->level()) {
    if (level_ == spdlog::level::info) spdlog::default_logger()->set_level(spdlog::level::warn);
  }
  ~QuietRun() { spdlog::default_logger()->set_level(level_); }

 private:
  spdlog::level::level_enum level_;
};

// A config as YAML text without the keys that only say how finished runs are reported
// (which classes need context or carry the cue, the "learned" threshold) and without the
// options of blocks other than the run's (checked, never built: README, "Configs"): changing
// those leaves what was trained and evaluated the same, so a block added to the configs, or
// another block's option changed, does not orphan the recorded runs.
std::string trained_part(const std::string& config_yaml) {
  YAML::Node tree = YAML::Load(config_yaml);
  if (tree["eval"]) {
    for (const char* key : {"context_classes", "cue_classes", "learned_iou"}) tree["eval"].remove(key);
  }
  if (YAML::Node attention = tree["model"]["attention"]; attention && attention.IsMap() && attention["type"]) {
    const std::string active = attention["type"].as<std::string>();
    std::vector<std::string> inactive;
    for (const auto& item : attention) {
      const std::string key = item.first.as<std::string>();
      if (!is_attention_setting(key) && key != active) inactive.push_back(key);
    }
    for (const std::string& key : inactive) attention.remove(key);
  }
  return YAML::Dump(tree);
}

// The run's eval.json, training it first (or resuming it) when it is missing.
nlohmann::json finished_run(const Run& run, const Runtime& runtime, JobProgress& job, int64_t to_train,
                            ProcessGroup* group) {
  const fs::path eval_file = run.dir / "eval.json", config_file = run.dir / "config.yaml";
  const std::string config_yaml = run.config.dump() + "\n";
  if (fs::exists(config_file) && trained_part(read_text(config_file)) != trained_part(config_yaml)) {
    throw Error(run.dir.string() + " holds a run made with another config (its config.yaml differs): remove it "
                "or sweep into another work directory");
  }
  if (fs::exists(eval_file)) {
    nlohmann::json eval;
    try {
      eval = nlohmann::json::parse(read_text(eval_file));
      (void)eval.at("mIoU").get<double>();
    } catch (const std::exception& e) {
      throw Error(eval_file.string() + " is not an evaluation report (" + one_line(e.what()) +
                  "): remove it to evaluate again");
    }
    spdlog::info("{} seed {}: finished earlier, mIoU {:.2f} ({}), not retrained", run.block, run.seed,
                 100 * eval["mIoU"].get<double>(), eval_file.string());
    return eval;
  }
  const auto saved = checkpoints_in(run.dir);
  const bool resume = !saved.empty();
  spdlog::info("{} seed {}: {} in {}", run.block, run.seed,
               resume ? "resuming from " + saved.front().second.filename().string() : std::string("training"),
               run.dir.string());
  const auto start = std::chrono::steady_clock::now();
  TrainResult trained;
  EvalResult result;
  {
    QuietRun quiet;
    job.part = fmt::format("{} seed {} ({}/{})", run.block, run.seed, run.ordinal, to_train);
    trained = train(run.experiment, run.config.dump(), runtime, run.dir, resume, group, &job);
    // Rank 0 writes the checkpoint every rank evaluates.
    if (group) group->barrier();
    result = evaluate(run.experiment, runtime, trained.checkpoint, {}, sum_over(group));
  }
  const nlohmann::json eval = report_json(result);
  if (runtime.rank == 0) write_text_atomically(eval_file, eval.dump(2) + "\n");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string loss = std::isnan(trained.final_loss) ? std::string("trained earlier")
                                                          : fmt::format("final loss {:.4f}", trained.final_loss);
  spdlog::info("{} seed {}: {} iterations, {}, mIoU {:.2f}, {:.0f} s", run.block, run.seed, trained.iterations, loss,
               100 * result.metrics.miou, seconds);
  return eval;
}

// A trained model in the benchmark, and its block alone at the feature map and enlargements.
struct Timed {
  BenchSubject model, block;
  at::Tensor image;  // the first validation image, normalised, [1, 3, H, W], on the device
  Timing best{std::numeric_limits<double>::infinity(), 0, 0};
  std::vector<std::array<int64_t, 2>> block_sizes;
  std::vector<double> block_best;  // fastest median per size; NaN where the block cannot run
  std::string note;
};

}  // namespace

Leaderboard run_sweep(const SweepSettings& s, const Runtime& runtime, ProcessGroup* group) {
  if (s.blocks.empty()) throw Error("sweep: no block to train");
  if (s.seeds < 1) throw Error("sweep: at least one seed is needed");
  // Every run's config is read and validated before anything is trained.
  const Experiment first = read_experiment(Config::load(s.config, s.overrides));
  {
    FolderDataset train_split(first.data.train), val_split(first.data.val);
    if (val_split.size() == 0) throw Error("sweep: the validation split of " + s.config.string() + " is empty");
  }
  std::vector<Run> runs;
  for (const std::string& block : s.blocks) {
    for (int64_t k = 0; k < s.seeds; ++k) {
      Run run;
      run.block = block;
      run.seed = first.train.seed + static_cast<uint64_t>(k);
      run.dir = s.work_dir / block / ("seed" + std::to_string(run.seed));
      std::vector<std::string> overrides = s.overrides;
      overrides.push_back("model.attention.type=" + block);
      overrides.push_back("train.seed=" + std::to_string(run.seed));
      run.config = Config::load(s.config, overrides);
      run.experiment = read_experiment(run.config);
      const std::string refusal = runtime_refusal(find_block(block), runtime);
      if (!refusal.empty()) throw Error("sweep: " + refusal);
      runs.push_back(run);
    }
  }
  // Rank 0 holds the directory for the job; every rank reads what earlier runs left there.
  std::unique_ptr<WorkDirLock> lock;
  decide_on_rank_zero(group, runtime.rank, [&] { lock = claim_work_dir(s.work_dir, "sweep"); });
  spdlog::info("sweep of {} blocks x {} seed(s) from {} into {}", s.blocks.size(), s.seeds, s.config.string(),
               s.work_dir.string());

  // The training still to do: its iterations are the sweep's progress (evaluation and the
  // benchmark are not counted, but their time is in the rate, so in the estimated end).
  JobProgress job;
  job.name = "sweep";
  int64_t to_train = 0;
  for (Run& run : runs) {
    if (fs::exists(run.dir / "eval.json")) continue;
    const auto saved = checkpoints_in(run.dir);
    const int64_t iters = run.experiment.train.iters;
    job.total += iters - (saved.empty() ? 0 : std::min(saved.front().first, iters));
    run.ordinal = ++to_train;
  }

  Leaderboard board;
  board.config = s.config.string();
  for (const auto& o : s.overrides) board.overrides += (board.overrides.empty() ? "" : " ") + o;
  board.iterations = first.train.iters;
  board.seeds = s.seeds;
  board.first_seed = first.train.seed;
  board.rounds = s.rounds;
  board.device = runtime.device.str() + " " + precision_name(runtime.precision);
  board.eval_interval = first.eval.interval;
  board.context_classes = first.eval.context_classes;
  board.learned_iou = first.eval.learned_iou / 100;
  board.region_names = read_region_names(first.data.val.root);
  const std::vector<size_t> context = class_ids(first.eval.context_classes, first.data.class_names);
  for (const std::string& block : s.blocks) {
    LeaderboardRow row;
    row.block = block;
    std::vector<std::vector<double>> class_iou;
    std::vector<double> erfs, cues;
    for (const Run& run : runs) {
      if (run.block != block) continue;
      const nlohmann::json eval = finished_run(run, runtime, job, to_train, group);
      if (runtime.rank != 0) continue;  // rank 0 reports
      row.miou.push_back(eval.at("mIoU").get<double>());
      std::vector<double> ious;
      row.class_names.clear();
      for (const auto& c : eval.at("classes")) {
        row.class_names.push_back(c.at("name").get<std::string>());
        ious.push_back(c.at("iou").is_null() ? std::numeric_limits<double>::quiet_NaN() : c.at("iou").get<double>());
      }
      class_iou.push_back(ious);
      // eval.json's "erf" and "cue" shares, where the run's evaluation measured them.
      for (auto [key, shares] : {std::pair{"erf", &erfs}, std::pair{"cue", &cues}}) {
        if (eval.contains(key) && eval[key].value("share", nlohmann::json()).is_number()) {
          shares->push_back(eval[key]["share"].get<double>());
        }
      }
      if (!board.region_names.empty()) {
        std::vector<double> reach;
        for (const auto& region : eval.value("regions", nlohmann::json::array())) {
          reach.push_back(region.at("iou").is_null() ? std::numeric_limits<double>::quiet_NaN()
                                                     : region.at("iou").get<double>());
        }
        if (reach.size() != board.region_names.size()) {
          throw Error((run.dir / "eval.json").string() + " has " + std::to_string(reach.size()) +
                      " region scores, the dataset names " + std::to_string(board.region_names.size()) +
                      ": remove it to evaluate again");
        }
        row.reach.push_back(reach);
      }
      if (first.eval.interval > 0) {
        row.curves.push_back(read_learning_curve(run.dir / "metrics.jsonl", first.data.class_names));
        row.learned_at.push_back(iterations_to_learn(row.curves.back(), context, board.learned_iou));
      }
    }
    for (size_t c = 0; c < row.class_names.size(); ++c) {
      std::vector<double> v;
      for (const auto& ious : class_iou) v.push_back(ious.at(c));
      row.class_iou.push_back(mean(v));
    }
    row.erf = erfs.size() == row.miou.size() ? mean(erfs) : std::numeric_limits<double>::quiet_NaN();
    row.cue = cues.size() == row.miou.size() ? mean(cues) : std::numeric_limits<double>::quiet_NaN();
    board.rows.push_back(row);
  }

  if (runtime.rank != 0) return board;

  // Benchmark: the trained models (first seed) in turn, several rounds, the fastest round of
  // each block kept so a slow spell of the machine does not land on one block only. Models
  // and blocks are timed by the bench's harness (engine/bench.h).
  board.threads = runtime.threads;
  std::vector<Timed> timed;
  for (const Run& run : runs) {
    if (run.seed != first.train.seed) continue;
    // A run kept as its reports only (config.yaml, eval.json, metrics.jsonl; see README,
    // "Recorded runs") is timed at its initial weights: no block's cost depends on its values.
    Segmentor model = build_model(run.experiment, runtime);
    const fs::path checkpoint = latest_checkpoint(run.dir);
    Timed t;
    if (checkpoint.empty() || !fs::exists(checkpoint)) {
      t.note = "timed at its initial weights (no checkpoint in " + run.dir.string() + ")";
    } else {
      load_checkpoint(checkpoint, model);
    }
    model->eval();
    FolderDataset val(run.experiment.data.val);
    t.image = image_to_tensor(val.load(0).image, run.experiment.norm).unsqueeze(0).to(runtime.device);
    t.model = model_subject(run.block, model);
    board.block_channels = model->head()->options.channels();
    t.block = block_subject(run.block, model->head()->block(), board.block_channels);
    timed.push_back(t);
  }
  board.resolution = {timed[0].image.size(2), timed[0].image.size(3)};
  for (size_t i = 0; i < timed.size(); ++i) {
    Timed& t = timed[i];
    LeaderboardRow& row = board.rows[i];
    {
      c10::InferenceMode guard;
      const auto& model = std::dynamic_pointer_cast<SegmentorImpl>(t.model.module);
      const at::Tensor logits = model->forward(t.image).logits;
      board.feature = {logits.size(2), logits.size(3)};
    }
    row.model_parameters = count_parameters(*t.model.module);
    row.block_parameters = count_parameters(*t.block.module);
    const at::Tensor feature_map = at::zeros({1, board.block_channels, board.feature[0], board.feature[1]});
    row.block_macs = t.block.macs(feature_map);
    for (int64_t f : {1, 2, 4}) t.block_sizes.push_back({board.feature[0] * f, board.feature[1] * f});
    t.block_best.assign(t.block_sizes.size(), std::numeric_limits<double>::infinity());
  }
  spdlog::info("benchmarking {} models at {}x{} on {}, {} threads, {} rounds", timed.size(), board.resolution[0],
               board.resolution[1], board.device, board.threads, s.rounds);
  for (int64_t round = 0; round < s.rounds; ++round) {
    for (size_t i = 0; i < timed.size(); ++i) {
      Timed& t = timed[i];
      LeaderboardRow& row = board.rows[i];
      const SizeResult model = bench_input(t.model, t.image, s.warmup, s.iters, /*backward=*/false, runtime);
      row.model_macs = model.macs;
      row.peak_bytes = model.peak_bytes;
      if (model.median_ms < t.best.median_ms) t.best = {model.median_ms, model.p25_ms, model.p75_ms};
      for (size_t k = 0; k < t.block_sizes.size(); ++k) {
        if (std::isnan(t.block_best[k])) continue;
        const auto& hw = t.block_sizes[k];
        at::manual_seed(0);
        const at::Tensor x = random_input(t.block, 1, hw, runtime);
        try {
          const SizeResult block = bench_input(t.block, x, s.warmup, s.iters, /*backward=*/false, runtime);
          t.block_best[k] = std::min(t.block_best[k], block.median_ms);
        } catch (const c10::Error& e) {
          t.block_best[k] = std::numeric_limits<double>::quiet_NaN();
          t.note += (t.note.empty() ? "" : "; ") + std::to_string(hw[0]) + "x" + std::to_string(hw[1]) +
                    " not timed: " + one_line(e.what_without_backtrace());
        }
      }
    }
  }
  for (size_t i = 0; i < timed.size(); ++i) {
    LeaderboardRow& row = board.rows[i];
    const Timed& t = timed[i];
    row.median_ms = t.best.median_ms;
    row.p25_ms = t.best.p25_ms;
    row.p75_ms = t.best.p75_ms;
    row.fps = 1000.0 / row.median_ms;
    std::vector<double> tokens, times;
    for (size_t k = 0; k < t.block_sizes.size(); ++k) {
      if (std::isnan(t.block_best[k])) continue;
      const double n = static_cast<double>(t.block_sizes[k][0] * t.block_sizes[k][1]);
      row.scaling.push_back({n, t.block_best[k]});
      tokens.push_back(n);
      times.push_back(t.block_best[k]);
    }
    row.time_exponent = growth_exponent(tokens, times);
    row.note = t.note;
  }
  order_rows(board.rows);

  write_text_atomically(s.work_dir / "leaderboard.csv", leaderboard_csv(board));
  write_text_atomically(s.work_dir / "leaderboard.md", leaderboard_markdown(board));
  draw_leaderboard(board, s.work_dir / "leaderboard.png");
  draw_scaling(board, s.work_dir / "scaling.png");
  if (board.eval_interval > 0) draw_learning_curves(board, s.work_dir / "curves.png");
  if (!board.region_names.empty()) draw_reach(board, s.work_dir / "reach.png");
  return board;
}

}  // namespace attnseg
