// Every registered block trains inside the full model on the synthetic dataset: a few
// iterations of the real trainer with the CPU config's block options, every logged loss
// finite, the checkpoint of the last iteration written, the weights moved by the gradients,
// and the evaluation of that checkpoint equal to the metrics counted here pixel by pixel.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <vector>

#include "attention/registry.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/synthetic.h"
#include "data/transforms.h"
#include "engine/checkpoint.h"
#include "engine_util.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::TempDir;
using test::tiny_config;
using test::write_file;
namespace fs = std::filesystem;

class BlockTraining : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    write_synthetic_dataset(data_->path(), {8, 2, 32, 0});
  }
  static void TearDownTestSuite() { delete data_; }
  static TempDir* data_;
};
TempDir* BlockTraining::data_ = nullptr;

at::Tensor flat(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> parts{at::zeros({0})};
  for (const auto& t : tensors) parts.push_back(t.detach().reshape(-1).to(at::kDouble));
  return at::cat(parts);
}

// How far `after` moved from `before` in directions other than `before` itself, relative
// to how far it moved: 0 when the move is a pure rescaling (all that weight decay does to
// weights no gradient reaches), about 1 for a move in a direction of its own.
double share_of_the_move_not_along_the_weights(const at::Tensor& before, const at::Tensor& after) {
  const at::Tensor move = after - before;
  const double moved = move.norm().item<double>();
  if (moved == 0) return 0;
  const double b2 = before.dot(before).item<double>();
  const at::Tensor across = b2 > 0 ? move - before * (move.dot(before).item<double>() / b2) : move;
  return across.norm().item<double>() / moved;
}

TEST_P(BlockTraining, TrainsToTheLastCheckpointMovesItsWeightsAndEvaluatesToTheCountedMetrics) {
  const TempDir dir;
  write_file(dir / "tiny.yaml", tiny_config(data_->path(), GetParam()));
  const Config config = Config::load(dir / "tiny.yaml", {"train.iters=6"});
  const Segmentor initial = test::model_of(config);  // train.seed's weights: those training starts from
  const fs::path work = dir / "work";
  const TrainResult r = test::train_config(config, work, /*resume=*/false);

  // One metrics line per iteration (log_interval 1), in order, each loss finite.
  std::ifstream metrics(work / "metrics.jsonl");
  int64_t lines = 0;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["iter"].get<int64_t>(), ++lines) << line;
    EXPECT_TRUE(std::isfinite(j["loss"].get<double>())) << line;
  }
  EXPECT_EQ(lines, 6);

  // The checkpoint of the last iteration is the run's, names itself as iteration 6 and is
  // the one a resumed run would start from.
  ASSERT_EQ(r.checkpoint, work / "iter_6.pt");
  EXPECT_EQ(latest_checkpoint(work), work / "iter_6.pt");
  Segmentor trained = test::model_of(config);
  EXPECT_EQ(load_checkpoint(r.checkpoint, trained).iteration, 6);

  // The gradients moved the weights: the model's as a whole, and at least one of the block's
  // own parameters, other than by the uniform shrinking that weight decay gives a weight no
  // gradient reaches (some legitimately get none: a key's bias under a softmax, or everything
  // behind a residual scale that starts at 0, whose own move from 0 then counts).
  EXPECT_GT(share_of_the_move_not_along_the_weights(flat(initial->parameters()), flat(trained->parameters())), 0.1);
  const auto block_before = initial->head()->block()->named_parameters();
  const auto block_after = trained->head()->block()->named_parameters();
  double block_moved = 0;
  for (const auto& p : block_before) {
    block_moved = std::max(block_moved, share_of_the_move_not_along_the_weights(
                                            flat({p.value()}), flat({block_after[p.key()]})));
  }
  if (!block_before.is_empty()) {
    EXPECT_GT(block_moved, 0.1) << "no parameter of the attention block trained";
  }

  // The evaluation of the checkpoint against the metrics counted here from the checkpoint's
  // own predictions on the validation images: per-class IoU = TP / (TP + FP + FN), NaN for a
  // class neither labelled nor predicted, mIoU their mean over the others.
  const EvalResult e = test::evaluate_config(config, r.checkpoint);
  const Experiment x = read_experiment(config);
  ASSERT_EQ(x.eval.mode, "whole");
  ASSERT_FALSE(x.eval.flip);
  const int64_t k = static_cast<int64_t>(x.data.class_names.size());
  std::vector<int64_t> tp(k), fp(k), fn(k);
  const FolderDataset val(x.data.val);
  trained->eval();
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < val.size(); ++i) {
      const Sample sample = val.load(i);
      const at::Tensor pred = trained->predict(image_to_tensor(sample.image, x.norm).unsqueeze(0)).argmax(1)[0];
      const auto p = pred.accessor<int64_t, 2>();
      for (int y = 0; y < sample.mask.rows; ++y) {
        for (int xx = 0; xx < sample.mask.cols; ++xx) {
          const int64_t label = sample.mask.at<uint8_t>(y, xx), predicted = p[y][xx];
          if (label == kIgnoreIndex) continue;
          if (predicted == label) {
            ++tp[label];
          } else {
            ++fn[label];
            ++fp[predicted];
          }
        }
      }
    }
  }
  EXPECT_EQ(e.images, static_cast<int64_t>(val.size()));
  ASSERT_EQ(e.metrics.iou.size(), static_cast<size_t>(k));
  double sum = 0;
  int defined = 0;
  for (int64_t c = 0; c < k; ++c) {
    const int64_t uni = tp[c] + fp[c] + fn[c];
    if (uni == 0) {
      EXPECT_TRUE(std::isnan(e.metrics.iou[c])) << x.data.class_names[c];
      continue;
    }
    const double iou = double(tp[c]) / double(uni);
    EXPECT_NEAR(e.metrics.iou[c], iou, 1e-12) << x.data.class_names[c];
    sum += iou;
    ++defined;
  }
  ASSERT_GT(defined, 0);
  EXPECT_NEAR(e.metrics.miou, sum / defined, 1e-12);
  EXPECT_GE(e.metrics.miou, 0.0);
  EXPECT_LE(e.metrics.miou, 1.0);
}

INSTANTIATE_TEST_SUITE_P(Registry, BlockTraining, ::testing::ValuesIn(block_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace attnseg
