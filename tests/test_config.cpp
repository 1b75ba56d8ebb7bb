// Config layering, overrides and the errors that name the key and the file.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include <set>

#include "attention/nonlocal.h"
#include "attention/registry.h"
#include "config/config.h"
#include "core/runtime.h"
#include "engine/experiment.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::error_of;
using test::TempDir;
using test::write_file;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir / "_base_/a.yaml", "train: {iters: 10, lr: 0.1}\nmodel: {head: {channels: 8}}\n");
    write_file(dir / "_base_/b.yaml", "train: {lr: 0.2}\nlist: [1, 2, 3]\n");
    write_file(dir / "exp.yaml", "_base_: [_base_/a.yaml, _base_/b.yaml]\ntrain: {seed: 7}\nlist: [9]\n");
  }
  TempDir dir;
};

TEST_F(ConfigTest, LaterBasesAndTheFileOverrideEarlierOnes) {
  const Config c = Config::load(dir / "exp.yaml");
  const ConfigNode train = c.root().child("train");
  EXPECT_EQ(train.get<int64_t>("iters", 0), 10);
  EXPECT_DOUBLE_EQ(train.get<double>("lr", 0), 0.2);
  EXPECT_EQ(train.get<int64_t>("seed", 0), 7);
  EXPECT_EQ(c.root().get<std::vector<int64_t>>("list", {}), std::vector<int64_t>{9});  // lists replace
  EXPECT_EQ(c.root().child("model").child("head").get<int64_t>("channels", 0), 8);
  EXPECT_EQ(c.origin("train.lr"), (dir / "exp.yaml").parent_path().string() + "/_base_/b.yaml");
  EXPECT_EQ(c.origin("train.seed"), (dir / "exp.yaml").string());
}

TEST_F(ConfigTest, OverridesSetNestedKeysWithYamlValues) {
  const Config c = Config::load(dir / "exp.yaml", {"train.iters=99", "model.head.channels=4", "list=[4, 5]"});
  EXPECT_EQ(c.root().child("train").get<int64_t>("iters", 0), 99);
  EXPECT_EQ(c.root().child("model").child("head").get<int64_t>("channels", 0), 4);
  EXPECT_EQ(c.root().get<std::vector<int64_t>>("list", {}), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(c.origin("train.iters"), "command line");
}

TEST_F(ConfigTest, WrongTypeNamesKeyOriginAndExpectedType) {
  const Config c = Config::load(dir / "exp.yaml", {"train.iters=abc"});
  const std::string m = error_of([&] { c.root().child("train").get<int64_t>("iters", 0); });
  EXPECT_TRUE(contains(m, "'train.iters'")) << m;
  EXPECT_TRUE(contains(m, "command line")) << m;
  EXPECT_TRUE(contains(m, "an integer")) << m;
  EXPECT_TRUE(contains(m, "'abc'")) << m;
}

TEST_F(ConfigTest, UnknownKeyNamesKeyFileAndAcceptedKeys) {
  const Config c = Config::load(dir / "exp.yaml");
  const ConfigNode train = c.root().child("train");
  train.get<int64_t>("iters", 0);
  train.get<double>("lr", 0);
  const std::string m = error_of([&] { train.finish(); });
  EXPECT_TRUE(contains(m, "unknown config key 'train.seed'")) << m;
  EXPECT_TRUE(contains(m, "exp.yaml")) << m;
  EXPECT_TRUE(contains(m, "iters, lr")) << m;
}

TEST_F(ConfigTest, MalformedYamlNamesFileAndLine) {
  write_file(dir / "bad.yaml", "train:\n  iters: 10\n  lr: [0.1\n");
  const std::string m = error_of([&] { Config::load(dir / "bad.yaml"); });
  EXPECT_TRUE(contains(m, "malformed YAML in " + (dir / "bad.yaml").string() + ":")) << m;
}

TEST_F(ConfigTest, MissingFilesAreNamed) {
  EXPECT_TRUE(contains(error_of([&] { Config::load(dir / "nope.yaml"); }), "nope.yaml"));
  write_file(dir / "orphan.yaml", "_base_: missing_base.yaml\n");
  const std::string m = error_of([&] { Config::load(dir / "orphan.yaml"); });
  EXPECT_TRUE(contains(m, "missing_base.yaml")) << m;
}

TEST_F(ConfigTest, MalformedOverrideIsRejected) {
  EXPECT_TRUE(contains(error_of([&] { Config::load(dir / "exp.yaml", {"train.iters"}); }), "dotted.key=value"));
  EXPECT_TRUE(contains(error_of([&] { Config::load(dir / "exp.yaml", {"train..iters=1"}); }), "empty key"));
  EXPECT_TRUE(contains(error_of([&] { Config::load(dir / "exp.yaml", {"train=3"}); }), "mapping"));
}

// The repository's own experiment configs, through the full reader.
const std::string kDefault = ATTNSEG_SOURCE_DIR "/configs/ccnet_r18_synthetic.yaml";

TEST(ExperimentConfig, RepositoryConfigsAreValid) {
  for (const char* name : {"ccnet_r18_synthetic", "none_r18_synthetic", "nonlocal_r18_synthetic"}) {
    const Config c = Config::load(std::string(ATTNSEG_SOURCE_DIR "/configs/") + name + ".yaml");
    EXPECT_NO_THROW(read_experiment(c)) << name;
  }
}

TEST(ExperimentConfig, UnknownOverrideKeyIsAnErrorNamingIt) {
  const Config c = Config::load(kDefault, {"train.iterz=5"});
  const std::string m = error_of([&] { read_experiment(c); });
  EXPECT_TRUE(contains(m, "'train.iterz' (command line)")) << m;
  EXPECT_TRUE(contains(m, "iters")) << m;
}

TEST(ExperimentConfig, UnknownSectionCreatedByAnOverrideIsBlamedOnTheCommandLine) {
  for (const std::string assignment : {"optim.lr=0.1", "optim.sgd.momentum=0.9"}) {
    const Config c = Config::load(kDefault, {assignment});
    const std::string m = error_of([&] { read_experiment(c); });
    EXPECT_TRUE(contains(m, "'optim' (command line)")) << m;
  }
  // A section the file has keeps the file as its origin when an override adds a key under it.
  const Config c = Config::load(kDefault, {"train.iterz=5"});
  EXPECT_EQ(c.origin("train"), Config::load(kDefault).origin("train"));
}

// Before, a bad value that the block itself refuses was blamed on the file that holds the
// block's section (the base model config), although the command line set it.
TEST(ExperimentConfig, AnOptionTheBlockRefusesIsNamedWithWhereItWasSet) {
  const Config c = Config::load(kDefault, {"model.attention.ccnet.recurrence=0"});
  const std::string m = error_of([&] { read_experiment(c); });
  EXPECT_TRUE(contains(m, "'model.attention.ccnet.recurrence' (command line)")) << m;
  EXPECT_TRUE(contains(m, "recurrence must be at least 1")) << m;
}

TEST(ExperimentConfig, UnknownBlockNamesKeyAndAcceptedBlocks) {
  const Config c = Config::load(kDefault, {"model.attention.type=crisscross"});
  const std::string m = error_of([&] { read_experiment(c); });
  EXPECT_TRUE(contains(m, "'crisscross'")) << m;
  EXPECT_TRUE(contains(m, "model.attention.type")) << m;
  EXPECT_TRUE(contains(m, "accepted: none, nonlocal, ccnet")) << m;
}

TEST(ExperimentConfig, UnknownBlockOptionNamesTheBlocksOptions) {
  const Config c = Config::load(kDefault, {"model.attention.ccnet.recurrance=3"});
  const std::string m = error_of([&] { read_experiment(c); });
  EXPECT_TRUE(contains(m, "model.attention.ccnet.recurrance")) << m;
  EXPECT_TRUE(contains(m, "recurrence")) << m;
}

TEST(ExperimentConfig, OptionsOfAnUnknownBlockAreAnError) {
  const Config c = Config::load(kDefault, {"model.attention.ccnett.recurrence=3"});
  const std::string m = error_of([&] { read_experiment(c); });
  EXPECT_TRUE(contains(m, "'ccnett'")) << m;
  EXPECT_TRUE(contains(m, "model.attention.ccnett")) << m;
}

TEST(ExperimentConfig, OneLineSwitchesTheBlock) {
  const Config c = Config::load(kDefault, {"model.attention.type=nonlocal"});
  const Segmentor model = build_model(read_experiment(c));
  EXPECT_NE(std::dynamic_pointer_cast<NonLocalImpl>(model->head()->block()), nullptr);
}

// The start rule (attention/registry.h, BlockStart) read from every registered block as the
// model is built: under `start: gate` no block returns its input at the start (no hidden zero
// gamma or zero last layer) and the head's gate holds gate_init; under `start: paper` exactly
// the blocks whose reference code starts them as the identity (a zero gamma: ccnet, scram; a
// zero-initialised last norm or conv: nonlocal, gcnet, fast_l2, autonl) return their input,
// and there is no gate. `none` is the identity with no gate under both.
TEST(StartRule, EveryRegisteredBlockStartsUnderTheOneRule) {
  const std::set<std::string> identity_in_reference{"nonlocal", "ccnet", "gcnet", "fast_l2", "autonl", "scram"};
  for (const std::string& name : block_names()) {
    for (const bool paper : {false, true}) {
      const Config c = Config::load(kDefault, {"model.attention.type=" + name,
                                               std::string("model.attention.start=") + (paper ? "paper" : "gate"),
                                               "model.attention.gate_init=0.375"});
      torch::manual_seed(0);
      Segmentor model = build_model(read_experiment(c));
      model->eval();
      const std::string what = name + (paper ? " (start: paper)" : " (start: gate)");
      const at::Tensor gate = model->head()->gate();
      if (paper || name == "none") {
        EXPECT_FALSE(gate.defined()) << what;
      } else {
        ASSERT_TRUE(gate.defined()) << what;
        EXPECT_EQ(gate.item<double>(), 0.375) << what;
        EXPECT_TRUE(gate.requires_grad()) << what;
      }
      const at::Tensor x = torch::randn({2, model->head()->options.channels(), 7, 11});
      torch::NoGradGuard no_grad;
      const double change = (model->head()->block()->forward(x) - x).abs().max().item<double>();
      const bool identity = change == 0;
      const bool expected = name == "none" || (paper && identity_in_reference.count(name) > 0);
      EXPECT_EQ(identity, expected) << what << " changes its input by at most " << change;
    }
  }
}

TEST(StartRule, UnknownStartAndNonFiniteGateNameTheKey) {
  const std::string m = error_of([&] { read_experiment(Config::load(kDefault, {"model.attention.start=identity"})); });
  EXPECT_TRUE(contains(m, "model.attention.start")) << m;
  EXPECT_TRUE(contains(m, "gate or paper")) << m;
  const std::string g = error_of([&] { read_experiment(Config::load(kDefault, {"model.attention.gate_init=.nan"})); });
  EXPECT_TRUE(contains(g, "model.attention.gate_init")) << g;
  const std::string z = error_of([&] { read_experiment(Config::load(kDefault, {"model.attention.ccnet.zero_init=false"})); });
  EXPECT_TRUE(contains(z, "model.attention.ccnet.zero_init")) << z;
}

TEST(ExperimentConfig, ZeroOrNegativeSizesAreRejected) {
  for (const std::string o : {"data.train_pipeline.crop_size=[0, 128]", "train.iters=0", "data.batch_size=-2",
                              "eval.crop_size=[-1, 5]", "model.head.channels=0"}) {
    const Config c = Config::load(kDefault, {o});
    const std::string key = o.substr(0, o.find('='));
    const std::string m = error_of([&] { read_experiment(c); });
    EXPECT_NE(m, "(no error)") << o;
    const std::string last = key.substr(key.rfind('.') + 1);
    EXPECT_TRUE(contains(m, last)) << o << ": " << m;
  }
}

TEST(ExperimentConfig, PolyScheduleWithWarmup) {
  TrainSettings s;
  s.iters = 100;
  s.lr = 0.01;
  s.min_lr = 1e-4;
  s.power = 0.9;
  s.warmup_iters = 10;
  s.warmup_ratio = 0.1;
  // Warm-up starts at lr·ratio of the poly value and reaches the poly value at warmup_iters.
  EXPECT_NEAR(poly_lr(s, 0), 0.01 * 0.1, 1e-12);
  const double poly10 = (0.01 - 1e-4) * std::pow(0.9, 0.9) + 1e-4;
  EXPECT_NEAR(poly_lr(s, 10), poly10, 1e-12);
  const double poly5 = (0.01 - 1e-4) * std::pow(0.95, 0.9) + 1e-4;
  EXPECT_NEAR(poly_lr(s, 5), poly5 * (1 - 0.5 * 0.9), 1e-12);
  EXPECT_NEAR(poly_lr(s, 100), 1e-4, 1e-12);
}

TEST(Runtime, NamesTheBlasThatMatrixProductsCall) {
  const std::string lib = blas_library();
  ASSERT_FALSE(lib.empty());
  EXPECT_TRUE(std::filesystem::exists(lib)) << lib;
  EXPECT_NE(lib.find("blas"), std::string::npos) << lib;
}

// When the build found Debian's OpenMP OpenBLAS, LibTorch's products must call it (and not the
// pthread build the system's alternatives name), or the two thread pools fight again.
TEST(Runtime, MatrixProductsUseTheOpenMPBuildOfOpenBlas) {
  if (!ATTNSEG_OPENMP_BLAS_LOADED) GTEST_SKIP() << "built without libopenblas0-openmp";
  const at::Tensor a = at::randn({64, 64});
  (void)at::mm(a, a);
  EXPECT_NE(blas_library().find("openblas-openmp"), std::string::npos) << blas_library();
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
void* volatile escaped_block = nullptr;  // so that the allocation below is not optimised away

// Whether the environment sets glibc's allocator (then keep_freed_memory() leaves it alone):
// GLIBC_TUNABLES with a malloc tunable, or one of `variables`.
bool environment_sets_allocator(std::initializer_list<const char*> variables) {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "malloc")) return true;
  for (const char* variable : variables) {
    if (std::getenv(variable)) return true;
  }
  return false;
}

// glibc maps every block over its 32 MiB threshold limit afresh (and page-faults it in on every
// forward) unless mmap is switched off; a 64 MiB block (one [1, 65536, 256] float map) must
// come from the heap once keep_freed_memory() has run.
TEST(Runtime, KeepFreedMemoryServesA64MiBBlockFromTheHeapWithoutAMapping) {
  if (environment_sets_allocator({"MALLOC_MMAP_MAX_"})) GTEST_SKIP() << "the environment sets the allocator";
  keep_freed_memory();
  const size_t mapped_before = mallinfo2().hblks;
  escaped_block = std::malloc(size_t{64} << 20);
  ASSERT_NE(escaped_block, nullptr);
  const size_t mapped_during = mallinfo2().hblks;
  std::free(escaped_block);
  EXPECT_EQ(mapped_during, mapped_before) << "the 64 MiB block was given its own mapping";
}

// ...and the heap is never trimmed: after a 1.5 GiB block (reserved, never touched, so it costs
// no memory) is freed, the heap keeps its size for the next forward instead of giving it back.
TEST(Runtime, KeepFreedMemoryKeepsTheHeapAfterA1500MiBBlockIsFreed) {
  if (environment_sets_allocator({"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_"})) {
    GTEST_SKIP() << "the environment sets the allocator";
  }
  keep_freed_memory();
  escaped_block = std::malloc(size_t{1500} << 20);
  ASSERT_NE(escaped_block, nullptr);
  const size_t heap_during = mallinfo2().arena;
  ASSERT_GE(heap_during, size_t{1500} << 20) << "the block did not come from the heap";
  std::free(escaped_block);
  EXPECT_EQ(mallinfo2().arena, heap_during) << "the heap was trimmed";
}
#endif

TEST(Runtime, ThreadCountIsSetExplicitly) {
  EXPECT_EQ(set_threads(1), 1);
  EXPECT_GE(set_threads(0), 1);
  EXPECT_THROW(set_threads(-1), Error);
}

}  // namespace
}  // namespace attnseg

namespace attnseg {
namespace {

// Every experiment shipped in configs/ parses, validates every key and builds its model, so
// a renamed option or a typo in a config cannot wait for someone to train it.
TEST(ShippedConfigs, EveryConfigBuildsItsModel) {
  namespace fs = std::filesystem;
  int checked = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(ATTNSEG_SOURCE_DIR) / "configs")) {
    const fs::path& path = entry.path();
    if (path.extension() != ".yaml" || path.string().find("_base_") != std::string::npos) continue;
    SCOPED_TRACE(path.string());
    try {
      const Segmentor model = build_model(read_experiment(Config::load(path.string())));
      EXPECT_GT(count_parameters(*model), 0);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
    ++checked;
  }
  EXPECT_GE(checked, 6);
}

}  // namespace
}  // namespace attnseg
