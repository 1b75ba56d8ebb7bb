// The CUDA path against the CPU (label `gpu`): every block's forward and backward, the lattice
// and the search that have their own GPU forms, a short training run, a checkpoint crossing
// devices and the headless demo. Each test skips itself where no CUDA device is present (CI
// has none); tools/device_check.sh runs them on the GPU machine.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "attention/functional.h"
#include "attention/kernel_support.h"
#include "attention/lattice_hash.h"
#include "attention/permutohedral.h"
#include "attention/registry.h"
#include "attention/scram.h"
#include "core/device.h"
#include "engine_util.h"
#include "fixture.h"
#include "test_util.h"
#include "test_video.h"

namespace attnseg {
namespace {

using test::losses;
using test::read_video;
using test::run_attnseg;
using test::write_file;
using test::write_test_video;

// The device these tests run on: the first GPU; without one, the CPU when
// ATTNSEG_GPU_TESTS_ON_CPU=1 (a dry run of the tests themselves, float32 on the CPU against
// float64), else none and the tests skip.
std::string target_device() {
  if (torch::cuda::is_available()) return "cuda";
  const char* dry = std::getenv("ATTNSEG_GPU_TESTS_ON_CPU");
  return dry && std::string(dry) == "1" ? "cpu" : "";
}

#define SKIP_WITHOUT_CUDA() \
  if (target_device().empty()) GTEST_SKIP() << "no CUDA device"

at::Device target() { return target_device() == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU); }

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.detach().to(at::kCPU, at::kDouble), y = b.detach().to(at::kCPU, at::kDouble);
  return (x - y).norm().item<double>() / std::max(y.norm().item<double>(), 1e-300);
}

double cosine(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.detach().to(at::kCPU, at::kDouble).reshape(-1), y = b.detach().to(at::kCPU, at::kDouble).reshape(-1);
  return (x * y).sum().item<double>() / std::max(x.norm().item<double>() * y.norm().item<double>(), 1e-300);
}

// Products in true fp32 on the GPU (no TF32), for the scope.
class NoTf32 {
 public:
  NoTf32() : cublas_(at::globalContext().allowTF32CuBLAS()), cudnn_(at::globalContext().allowTF32CuDNN()) {
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }
  ~NoTf32() {
    at::globalContext().setAllowTF32CuBLAS(cublas_);
    at::globalContext().setAllowTF32CuDNN(cudnn_);
  }

 private:
  bool cublas_, cudnn_;
};

Runtime cuda_runtime(Precision precision) {
  Runtime rt;
  rt.device = target();
  rt.precision = precision;
  return rt;
}

// Output, input gradient and every parameter's gradient of one pass of `block` on `x` with
// the loss Σ y·weight.
struct Pass {
  at::Tensor y, dx;
  std::vector<at::Tensor> dparams;
};

Pass run_pass(const AttentionBlock& block, const at::Tensor& x0, const at::Tensor& weight, const Runtime* autocast) {
  for (auto& p : block->parameters()) p.mutable_grad().reset();
  const at::Tensor x = x0.detach().clone().requires_grad_();
  at::Tensor y;
  if (autocast) {
    AutocastGuard guard(*autocast);
    y = block->forward(x);
  } else {
    y = block->forward(x);
  }
  (y.to(weight.scalar_type()) * weight).sum().backward();
  Pass pass{y.detach(), x.grad(), {}};
  for (const auto& p : block->parameters()) {
    pass.dparams.push_back(p.grad().defined() ? p.grad().reshape(-1) : at::zeros({p.numel()}, p.options()));
  }
  return pass;
}

class GpuBlock : public ::testing::TestWithParam<std::string> {};

// Fresh random inputs each run (no fixed seed): the CPU in float64 is the reference.
// ATTNSEG_GPU_TESTS_ON_CPU=1 runs this file on the CPU where no GPU is present (float32 and
// CPU autocast against float64): a dry run of the tests themselves.
// scram on a map of 15 pixels with its default 16 keys covers the map, so its search (whose
// random draws differ between devices) finds every key on both and the result is exact.
TEST_P(GpuBlock, ForwardAndBackwardOnCudaMatchTheCpuInFloat64) {
  SKIP_WITHOUT_CUDA();
  const std::string name = GetParam();
  if (!find_block(name).caps.cuda) GTEST_SKIP() << name << " declares no CUDA support";
  NoTf32 exact;
  const AttentionBlock block = build_block(name, 16);
  {
    torch::NoGradGuard no_grad;  // no part of the block hidden behind a zero-initialised scale
    for (auto& p : block->parameters()) {
      if (p.abs().sum().item<double>() == 0) p.normal_(0.0, 0.5);
    }
  }
  block->eval();
  const std::vector<int64_t> shape = name == "scram" ? std::vector<int64_t>{2, 16, 3, 5} : std::vector<int64_t>{2, 16, 9, 13};
  const at::Tensor x = torch::randn(shape, at::kDouble), weight = torch::randn(shape, at::kDouble);
  test::to_floating(*block, at::kCPU, at::kDouble);
  const Pass cpu = run_pass(block, x, weight, nullptr);
  test::to_floating(*block, target(), at::kFloat);
  const auto cuda = [&](const at::Tensor& t) { return t.to(target(), at::kFloat); };
  const Pass gpu = run_pass(block, cuda(x), cuda(weight), nullptr);
  EXPECT_LT(relative_error(gpu.y, cpu.y), 1e-4) << name << " forward";
  EXPECT_LT(relative_error(gpu.dx, cpu.dx), 1e-4) << name << " input gradient";
  if (!cpu.dparams.empty()) {
    EXPECT_LT(relative_error(at::cat(gpu.dparams), at::cat(cpu.dparams)), 1e-4) << name << " parameter gradients";
  }
  // bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.39%) and a block rounds its values
  // several times on the way (input, projections, products, output): 2% forward is five
  // roundoffs (the CPU dry run, ten fresh draws: at most 1.01%, cbam). Gradients also pass
  // masks (ReLU, max-pooling, top-k) whose entries near a threshold switch under roundoff: the
  // input gradient's relative error reached 5-6% in a few draws (ema, which ends in a ReLU),
  // so for gradients the check is their direction, what a step follows: cosine ≥ 0.99.
  if (find_block(name).caps.bf16) {
    const Runtime bf16 = cuda_runtime(Precision::bf16);
    const Pass half = run_pass(block, cuda(x), cuda(weight), &bf16);
    EXPECT_LT(relative_error(half.y, cpu.y), 2e-2) << name << " bf16 forward";
    EXPECT_GT(cosine(half.dx, cpu.dx), 0.99) << name << " bf16 input gradient";
    if (!cpu.dparams.empty()) {
      EXPECT_GT(cosine(at::cat(half.dparams), at::cat(cpu.dparams)), 0.99) << name << " bf16 parameter gradients";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryBlock, GpuBlock, ::testing::ValuesIn(block_names()),
                         [](const auto& info) { return info.param; });

using Attention = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&);

// Output and the gradients of q, k and v of `attention` on copies of them on `device` in `type`,
// under the loss Σ out · g.
std::vector<at::Tensor> outputs_and_gradients(Attention attention, const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, const at::Tensor& g, const at::Device& device,
                                              at::ScalarType type) {
  auto leaf = [&](const at::Tensor& t) { return t.to(device, type).detach().requires_grad_(); };
  std::vector<at::Tensor> in{leaf(q), leaf(k), leaf(v)};
  const at::Tensor y = attention(in[0], in[1], in[2]);
  (y * g.to(device, type)).sum().backward();
  return {y.detach(), in[0].grad(), in[1].grad(), in[2].grad()};
}

at::Tensor permutohedral_default(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return functional::permutohedral_attention(q, k, v);
}

// The lattice's GPU form (tensor operations over a vertex table from the hash table's kernels)
// against the CPU lattice, forward and gradient, on odd sizes.
TEST(GpuLattice, PermutohedralOnCudaMatchesTheCpuLatticeForwardAndGradient) {
  SKIP_WITHOUT_CUDA();
  NoTf32 exact;
  const at::Tensor q = torch::randn({2, 5, 7, 5}, at::kDouble), k = torch::randn({2, 5, 9, 3}, at::kDouble);
  const at::Tensor v = torch::randn({2, 3, 9, 3}, at::kDouble), g = torch::randn({2, 3, 7, 5}, at::kDouble);
  const auto cpu = outputs_and_gradients(permutohedral_default, q, k, v, g, at::kCPU, at::kDouble);
  const auto gpu = outputs_and_gradients(permutohedral_default, q, k, v, g, target(), at::kFloat);
  const char* what[] = {"output", "dq", "dk", "dv"};
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_LT(relative_error(gpu[i], cpu[i]), 1e-4) << what[i];
}

// ccnet's fused kernels on the device against the unfused path on the CPU in float64: in
// float64 to roundoff, in float to 1e-4 (no products on the tensor cores: the kernels add in
// float on the CUDA cores), in bfloat16 (float accumulation) to 2% forward and in direction for
// the gradients, as every block's bf16 check above. Odd sizes, a one-row map among them.
TEST(GpuCrissCross, FusedKernelsOnCudaMatchTheUnfusedCpuPathInFloat64FloatAndBfloat16) {
  SKIP_WITHOUT_CUDA();
  if (!kernels_run_on(target())) GTEST_SKIP() << "this build has no CUDA kernels";
  for (const auto& m : {std::vector<int64_t>{2, 11, 13}, std::vector<int64_t>{1, 1, 37}}) {
    // Energies of order 1 (9 channels of variance 1/3), as a trained block's.
    const at::Tensor q = torch::randn({m[0], 9, m[1], m[2]}, at::kDouble) / std::sqrt(3.0);
    const at::Tensor k = torch::randn({m[0], 9, m[1], m[2]}, at::kDouble) / std::sqrt(3.0);
    const at::Tensor v = torch::randn({m[0], 17, m[1], m[2]}, at::kDouble), g = torch::randn({m[0], 17, m[1], m[2]}, at::kDouble);
    auto fused = [&](at::ScalarType type) {
      auto out = outputs_and_gradients(functional::criss_cross_attention_fused, q, k, v, g, target(), type);
      EXPECT_EQ(out[0].device(), target());
      return out;
    };
    const auto cpu = outputs_and_gradients(functional::criss_cross_attention, q, k, v, g, at::kCPU, at::kDouble);
    const auto exact = fused(at::kDouble), single = fused(at::kFloat), half = fused(at::kBFloat16);
    const char* what[] = {"output", "dq", "dk", "dv"};
    const std::string size = std::to_string(m[1]) + "x" + std::to_string(m[2]);
    for (size_t i = 0; i < cpu.size(); ++i) {
      EXPECT_LT(relative_error(exact[i], cpu[i]), 1e-12) << what[i] << " float64 " << size;
      EXPECT_LT(relative_error(single[i], cpu[i]), 1e-4) << what[i] << " float32 " << size;
      if (i == 0) {
        EXPECT_LT(relative_error(half[i], cpu[i]), 2e-2) << what[i] << " bf16 " << size;
      } else {
        EXPECT_GT(cosine(half[i], cpu[i]), 0.99) << what[i] << " bf16 " << size;
      }
    }
  }
}

// The hash table's kernels on the device: the same distinct rows as the host's table (in another
// order: the slots the threads win differ), every row mapped to its own, and each neighbour the
// row one step away or M, over rows with many repeats.
TEST(GpuLattice, HashTableOnCudaHoldsTheHostTablesRowsAndNeighbours) {
  SKIP_WITHOUT_CUDA();
  if (!kernels_run_on(target())) GTEST_SKIP() << "this build has no CUDA kernels";
  const int64_t d = 5;
  const at::Tensor distinct =
      at::cat({torch::randint(3, {5000, 1}, at::kLong), torch::randint(-3, 4, {5000, d}, at::kLong)}, 1);
  const at::Tensor rows = distinct.index_select(0, torch::randint(5000, {40000}, at::kLong));
  const lattice_hash::Table host = lattice_hash::build(rows), device = lattice_hash::build(rows.to(target()));
  ASSERT_EQ(device.rows.device(), target());
  const at::Tensor table = device.rows.cpu();
  EXPECT_TRUE(torch::equal(std::get<0>(torch::unique_dim(table, 0)), std::get<0>(torch::unique_dim(host.rows, 0))));
  EXPECT_TRUE(torch::equal(table.index_select(0, device.ids.cpu()), rows));
  const int64_t m = table.size(0);
  for (int64_t dir = 0; dir <= d; ++dir) {
    const at::Tensor nb = device.neighbours[dir].cpu();
    for (int64_t side = 0; side < 2; ++side) {
      at::Tensor shift = at::full({d + 1}, side == 0 ? -1 : 1, at::kLong);
      shift[0] = 0;
      if (dir < d) shift[dir + 1] = side == 0 ? d : -d;  // direction d moves the implicit last coordinate
      const at::Tensor ids = nb[side].narrow(0, 0, m), present = ids.lt(m);
      // Where found: exactly the row one step away; where not: that row is in no vertex's place.
      EXPECT_TRUE(torch::equal(table.index_select(0, ids.masked_select(present)),
                               (table + shift).index_select(0, present.nonzero().squeeze(1))))
          << "direction " << dir << " side " << side;
      const at::Tensor missing = (table + shift).index_select(0, present.logical_not().nonzero().squeeze(1));
      const at::Tensor joined = at::cat({table, missing});
      EXPECT_EQ(std::get<0>(torch::unique_dim(joined, 0)).size(0), joined.size(0))
          << "a neighbour the table holds was not found, direction " << dir << " side " << side;
    }
  }
}

// The search's tensor form, which the block runs on a GPU: indices on the device, distinct, best
// first, and the same for the same seed.
TEST(GpuSearch, TensorSearchOnCudaReturnsDistinctBestFirstKeysOnTheDeviceTheSameForASeed) {
  SKIP_WITHOUT_CUDA();
  const at::Device gpu = target();
  const at::Tensor q = torch::randn({2, 8, 11, 9}, gpu), k = torch::randn({2, 8, 11, 9}, gpu);
  const at::Tensor idx = functional::patchmatch_topk_tensor(q, k, 8, 4, 7);
  ASSERT_EQ(idx.device(), gpu);
  ASSERT_EQ(idx.sizes(), (at::IntArrayRef{2, 99, 8}));
  EXPECT_TRUE(idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < 99);
  const at::Tensor sorted = std::get<0>(idx.sort(-1));
  EXPECT_FALSE((sorted.narrow(-1, 1, 7) == sorted.narrow(-1, 0, 7)).any().item<bool>()) << "a key found twice";
  // In float64 against the search's float sums: the order may differ by their rounding (1e-6 here).
  const at::Tensor scores =
      at::bmm(q.flatten(2).transpose(1, 2).to(at::kDouble), k.flatten(2).to(at::kDouble)).gather(2, idx);
  EXPECT_TRUE((scores.narrow(-1, 0, 7) >= scores.narrow(-1, 1, 7) - 1e-5).all().item<bool>()) << "not best first";
  EXPECT_TRUE(torch::equal(idx, functional::patchmatch_topk_tensor(q, k, 8, 4, 7))) << "other keys for the same seed";
}

// --- the commands with runtime.device=cuda --------------------------------------------------

class GpuCommands : public test::TinyDataTest {
 protected:
  // The quoted path of the tiny config with runtime.device set to cuda in the file itself
  // (the demo takes no key=value overrides).
  std::string cuda_config() {
    std::string text = test::tiny_config(data_->path());
    const std::string runtime = "runtime: {threads: 1}";
    text.replace(text.find(runtime), runtime.size(), "runtime: {threads: 1, device: " + target_device() + "}");
    write_file(dir / "cuda.yaml", text);
    return "'" + (dir / "cuda.yaml").string() + "'";
  }
};

double mean(const std::vector<double>& v, size_t from, size_t count) {
  double s = 0;
  for (size_t i = from; i < from + count; ++i) s += v[i];
  return s / static_cast<double>(count);
}

// 100 iterations of the tiny synthetic config on each device from the same seed: the first
// losses agree (the same initial weights and batches; dropout's draws differ between the
// devices' generators, hence a tolerance), and the GPU run's loss falls. Its checkpoint then
// gives the same mIoU evaluated on the CPU as on the GPU.
TEST_F(GpuCommands, TrainingOnCudaFollowsTheCpuLossCurveAndItsCheckpointEvaluatesTheSameOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  const std::string common = " train.iters=100 train.checkpoint_interval=100 train.log_interval=1 train.seed=3";
  auto r = run_attnseg("train " + config() + " --work-dir '" + (dir / "cpu").string() + "'" + common +
                       " runtime.device=cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_attnseg("train " + config() + " --work-dir '" + (dir / "cuda").string() + "'" + common +
                  " runtime.device=" + target_device());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("device " + target_device()), std::string::npos) << r.output;
  const std::vector<double> cpu = losses(dir / "cpu/metrics.jsonl"), gpu = losses(dir / "cuda/metrics.jsonl");
  ASSERT_EQ(cpu.size(), 100u);
  ASSERT_EQ(gpu.size(), 100u);
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(gpu[i], cpu[i], 0.05 * cpu[i]) << "iteration " << i + 1;
  EXPECT_LT(mean(gpu, 90, 10), 0.8 * mean(gpu, 0, 10)) << "the loss did not fall on the GPU";

  const std::string checkpoint = " --checkpoint '" + (dir / "cuda/iter_100.pt").string() + "'";
  double miou[2] = {0, 0};
  const std::string devices[] = {"cpu", target_device()};
  for (int i = 0; i < 2; ++i) {
    const auto json = dir / ("eval_" + std::to_string(i) + ".json");
    r = run_attnseg("eval " + config() + checkpoint + " --json '" + json.string() + "' runtime.device=" + devices[i]);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    miou[i] = nlohmann::json::parse(test::read_file(json))["mIoU"].get<double>();
  }
  EXPECT_NEAR(100 * miou[1], 100 * miou[0], 0.1) << "mIoU on the CPU and on the GPU, in points";
}

TEST_F(GpuCommands, HeadlessDemoOnCudaWritesEveryFrame) {
  SKIP_WITHOUT_CUDA();
  auto r = run_attnseg("train " + cuda_config() + " --work-dir '" + (dir / "run").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  write_test_video(dir / "in.avi", 12);
  r = run_attnseg("demo " + cuda_config() + " --checkpoint '" + (dir / "run/iter_4.pt").string() + "' --source '" +
                  (dir / "in.avi").string() + "' --headless --point 250,70 --output '" + (dir / "out.avi").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("device " + target_device()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("showed 12 of 12 frames"), std::string::npos) << r.output;
  EXPECT_EQ(read_video(dir / "out.avi").size(), 12u);
}

}  // namespace
}  // namespace attnseg
