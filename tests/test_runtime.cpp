// The runtime every command takes: device and precision names, their refusal where the
// machine or a block cannot run them, autocast, and what a config's runtime section says.
#include <ATen/ATen.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <filesystem>
#include <string>

#include "attention/registry.h"
#include "config/config.h"
#include "core/cpu_bf16.h"
#include "core/device.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/experiment.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::error_of;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A pip-installed LibTorch exports copies of libstdc++'s filesystem functions; when the
// executable binds to them, remove_all(path, error_code&) jumps to address 0 (every test that
// removed a temporary folder died so on the GPU machine). The build names libstdc++ before
// LibTorch, so the symbol this process resolves must come from libstdc++ itself.
TEST(Toolchain, StdFilesystemBindsToLibstdcxx) {
  using RemoveAll = std::uintmax_t (*)(const std::filesystem::path&, std::error_code&);
  const RemoveAll bound = &std::filesystem::remove_all;
  // What the dynamic linker's global lookup finds for that overload (the executable's binding).
  const char* mangled = "_ZNSt10filesystem10remove_allERKNS_7__cxx114pathERSt10error_code";
  void* found = dlsym(RTLD_DEFAULT, mangled);
  ASSERT_NE(found, nullptr) << mangled;
  Dl_info info{};
  ASSERT_NE(dladdr(found, &info), 0);
  ASSERT_NE(info.dli_fname, nullptr);
  EXPECT_TRUE(contains(info.dli_fname, "libstdc++")) << "remove_all binds into " << info.dli_fname;
  const auto dir = std::filesystem::temp_directory_path() / ("attnseg_toolchain_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / "a" / "b");
  std::error_code error;
  EXPECT_EQ(bound(dir, error), 3u);
  EXPECT_FALSE(error) << error.message();
}

TEST(Runtime, DeviceNamesAreCheckedAndABadOneNamesItsKey) {
  for (const std::string ok : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"}) {
    EXPECT_EQ(error_of([&] { check_device_name(ok, "runtime.device"); }), "(no error)") << ok;
  }
  for (const std::string bad : {"gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cpu:0", ""}) {
    const std::string m = error_of([&] { check_device_name(bad, "runtime.device (x.yaml)"); });
    EXPECT_TRUE(contains(m, "runtime.device (x.yaml)") && contains(m, "'" + bad + "'")) << bad << ": " << m;
  }
}

TEST(Runtime, PrecisionNamesAreCheckedAndABadOneNamesItsKey) {
  EXPECT_EQ(parse_precision("fp32", "k"), Precision::fp32);
  EXPECT_EQ(parse_precision("bf16", "k"), Precision::bf16);
  EXPECT_EQ(parse_precision("fp16", "k"), Precision::fp16);
  for (const std::string bad : {"float32", "FP32", "bf", ""}) {
    const std::string m = error_of([&] { parse_precision(bad, "--precision"); });
    EXPECT_TRUE(contains(m, "--precision") && contains(m, "fp32, bf16 or fp16")) << bad << ": " << m;
  }
}

TEST(Runtime, AutoIsTheCpuAndCudaIsRefusedWhenNoGpuIsPresent) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  RuntimeSettings s;
  s.threads = 1;
  EXPECT_TRUE(start_runtime(s).device.is_cpu());
  for (const std::string cuda : {"cuda", "cuda:1"}) {
    s.device = cuda;
    s.device_key = "config key 'runtime.device' (command line)";
    const std::string m = error_of([&] { start_runtime(s); });
    EXPECT_TRUE(contains(m, "'runtime.device' (command line) is " + cuda) && contains(m, "no CUDA device")) << m;
  }
}

TEST(Runtime, Fp16IsRefusedOnTheCpuAndBf16Accepted) {
  RuntimeSettings s;
  s.device = "cpu";
  s.threads = 1;
  s.precision = Precision::fp16;
  EXPECT_TRUE(contains(error_of([&] { start_runtime(s); }), "runtime.precision fp16 runs only on a CUDA device"));
  s.precision = Precision::bf16;
  EXPECT_EQ(start_runtime(s).precision, Precision::bf16);
}

// The probe's answer is what a real product does: where it says the inner sums stay in float,
// a bf16 product with an inner dimension of 1000 is within 0.5% of fp32 (the inputs' and the
// output's rounding, about 0.3%); where it says they are kept in bf16, it is more than 1% off.
TEST(Runtime, TheBf16ProbeSaysFloatSumsExactlyWhereALongBf16ProductStaysNearFp32) {
  torch::manual_seed(0);
  const at::Tensor a = torch::randn({64, 1000}), b = torch::randn({1000, 48});
  const at::Tensor ref = at::mm(a, b);
  const at::Tensor low = at::mm(a.to(at::kBFloat16), b.to(at::kBFloat16)).to(at::kFloat);
  const double error = (low - ref).norm().item<double>() / ref.norm().item<double>();
  std::printf("bf16 sums in float: %s; relative L2 error of a 64x1000x48 bf16 product: %.4f\n",
              cpu_bf16_products_accumulate_in_float() ? "yes" : "no", error);
  if (cpu_bf16_products_accumulate_in_float()) {
    EXPECT_LT(error, 5e-3);
  } else {
    EXPECT_GT(error, 1e-2);
  }
}

TEST(Runtime, TheFirstLineNamesDevicePrecisionThreadsAndLibTorch) {
  RuntimeSettings s;
  s.device = "cpu";
  s.threads = 1;
  s.precision = Precision::bf16;
  const std::string line = describe_runtime(start_runtime(s));
  EXPECT_EQ(line.rfind("device cpu, precision bf16, 1 thread, LibTorch ", 0), 0u) << line;
  EXPECT_TRUE(contains(line, TORCH_VERSION)) << line;
}

TEST(Runtime, AutocastGuardComputesInBf16OnlyInsideItsScope) {
  Runtime bf16;
  bf16.precision = Precision::bf16;
  const at::Tensor a = at::randn({5, 7}), b = at::randn({7, 3});
  {
    AutocastGuard outer(bf16);
    EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
    {
      AutocastGuard fp32{Runtime{}};  // fp32 changes nothing, so the outer scope's autocast stays
      EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
    }
    EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
  }
  EXPECT_EQ(at::mm(a, b).scalar_type(), at::kFloat);
}

TEST(Runtime, TheConfigsRuntimeSectionIsReadAndChecked) {
  const std::string base = ATTNSEG_SOURCE_DIR "/configs/ccnet_r18_synthetic.yaml";
  const Experiment x = read_experiment(Config::load(base, {"runtime.device=cuda:1", "runtime.precision=bf16"}));
  EXPECT_EQ(x.runtime.device, "cuda:1");
  EXPECT_EQ(x.runtime.precision, Precision::bf16);
  EXPECT_TRUE(contains(x.runtime.device_key, "runtime.device"));
  const std::string m = error_of([&] { read_experiment(Config::load(base, {"runtime.precision=half"})); });
  EXPECT_TRUE(contains(m, "runtime.precision") && contains(m, "'half'")) << m;
  const std::string d = error_of([&] { read_experiment(Config::load(base, {"runtime.device=tpu"})); });
  EXPECT_TRUE(contains(d, "runtime.device") && contains(d, "'tpu'")) << d;
}

// The registry's capability flags, acted on when the model is built: a block that cannot run
// on the device or in the precision is refused in one line naming all three, before any of
// the model is built (so a CUDA device need not even exist for the refusal).
TEST(BlockCaps, TheBuilderRefusesABlockTheRuntimeCannotRun) {
  const std::string base = ATTNSEG_SOURCE_DIR "/configs/ccnet_r18_synthetic.yaml";
  Runtime fp16;  // as start_runtime would never resolve it on the CPU: the flag alone decides
  fp16.precision = Precision::fp16;
  const Experiment scram = read_experiment(Config::load(base, {"model.attention.type=scram"}));
  const std::string m = error_of([&] { build_model(scram, fp16); });
  EXPECT_TRUE(contains(m, "block scram") && contains(m, "fp16") && contains(m, "cpu") && contains(m, "fp32, bf16 only"))
      << m;

  Runtime gpu = fp16;
  gpu.device = c10::Device(c10::kCUDA, 0);
  const Experiment permutohedral = read_experiment(Config::load(base, {"model.attention.type=permutohedral"}));
  const std::string g = error_of([&] { build_model(permutohedral, gpu); });
  EXPECT_TRUE(contains(g, "block permutohedral") && contains(g, "cuda:0") && contains(g, "fp16")) << g;

  Runtime bf16;
  bf16.precision = Precision::bf16;
  EXPECT_NO_THROW(build_model(read_experiment(Config::load(base)), bf16));  // ccnet runs in bf16
  EXPECT_NO_THROW(build_model(scram, bf16));  // scram's search in float under autocast
}

TEST(BlockCaps, EveryRefusalMatchesTheDeclaredFlags) {
  Runtime cpu_bf16, cpu_fp16, gpu;
  cpu_bf16.precision = Precision::bf16;
  cpu_fp16.precision = Precision::fp16;
  gpu.device = c10::Device(c10::kCUDA, 0);
  for (const BlockSpec& spec : block_registry()) {
    EXPECT_EQ(runtime_refusal(spec, Runtime{}), "") << spec.name << ": every block runs on the CPU in fp32";
    EXPECT_EQ(runtime_refusal(spec, cpu_bf16).empty(), spec.caps.bf16) << spec.name;
    EXPECT_EQ(runtime_refusal(spec, cpu_fp16).empty(), spec.caps.fp16) << spec.name;
    EXPECT_EQ(runtime_refusal(spec, gpu).empty(), spec.caps.cuda) << spec.name;
  }
}

// fp16 on the CPU, which start_runtime refuses (and CPU autocast cannot compute in), so that
// the flags alone decide: every block asked for is refused before any is built or timed, and
// the first refusal is the error. (Refused blocks listed beside timed ones: the memory
// estimate's `not run:` lines, BenchMemory.ABlockWhoseEstimatedPeakExceedsTheLimitIsNotRunAndTheOthersAre.)
TEST(BlockCaps, TheBenchRefusesTheBlocksTheRuntimeCannotRunBeforeTimingAny) {
  BenchSettings s;
  s.blocks = {"scram", "permutohedral"};
  s.sizes = {{5, 7}};
  s.channels = 16;
  s.warmup = 0;
  s.iters = 1;
  Runtime fp16;
  fp16.precision = Precision::fp16;
  const std::string m = error_of([&] { bench_blocks(s, fp16); });
  EXPECT_TRUE(contains(m, "block scram cannot run in fp16 on cpu: it runs in fp32, bf16 only")) << m;
  s.blocks = {"permutohedral"};
  EXPECT_TRUE(contains(error_of([&] { bench_blocks(s, fp16); }), "block permutohedral cannot run in fp16")) << m;
}

// needs_fixed_tokens: no shipped block sets it yet; the check is on the flag, through a spec
// of the registry's shape.
TEST(BlockCaps, InferenceOnAnotherSizeThanTheTrainingCropIsRefusedForFixedTokenBlocks) {
  const std::string base = ATTNSEG_SOURCE_DIR "/configs/ccnet_r18_synthetic.yaml";
  Experiment x = read_experiment(Config::load(base));
  EXPECT_NO_THROW(check_inference_size(x, 97, 211, "image a.png")) << "ccnet takes any size";
  EXPECT_EQ(fixed_token_refusal(x, true, 64, 384), "");
  const std::string m = fixed_token_refusal(x, true, 97, 211);
  EXPECT_TRUE(contains(m, "97x211") && contains(m, "64x384") && contains(m, "eval.mode=slide")) << m;
  x.eval.mode = "slide";
  x.eval.crop_size = {64, 384};
  EXPECT_EQ(fixed_token_refusal(x, true, 97, 811), "") << "every window is the training crop";
  x.eval.crop_size = {64, 256};
  EXPECT_NE(fixed_token_refusal(x, true, 97, 811), "");
  // Every scale's windows are checked: at 0.5 the 97-row image is 49 rows, short of the crop.
  x.eval.crop_size = {64, 384};
  x.eval.scales = {1.0, 1.5};
  EXPECT_EQ(fixed_token_refusal(x, true, 97, 811), "");
  x.eval.scales = {0.5, 1.0};
  const std::string half = fixed_token_refusal(x, true, 97, 811);
  EXPECT_TRUE(contains(half, "49x384") && contains(half, "eval.scales ratio 0.5")) << half;
}

}  // namespace
}  // namespace attnseg
