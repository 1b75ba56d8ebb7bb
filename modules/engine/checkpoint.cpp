#include "engine/checkpoint.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <torch/cuda.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <mutex>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kFormatVersion = 1;

torch::Tensor string_tensor(const std::string& s) {
  return torch::from_blob(const_cast<char*>(s.data()), {static_cast<int64_t>(s.size())}, torch::kByte)
      .clone();
}

std::string tensor_string(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU).contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
}

// First entry where two signatures differ, for a readable mismatch message.
std::string first_difference(const std::string& expected, const std::string& found) {
  auto split = [](const std::string& s) {
    std::vector<std::string> parts;
    std::stringstream ss(s);
    for (std::string p; std::getline(ss, p, ';');) parts.push_back(p);
    return parts;
  };
  const auto a = split(expected), b = split(found);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i] : "(nothing)";
    const std::string y = i < b.size() ? b[i] : "(nothing)";
    if (x != y) return "model expects " + x + ", checkpoint has " + y;
  }
  return "";
}

// The generators whose states a checkpoint keeps: the CPU's, then each GPU's. A generator's
// state is a byte tensor on the CPU whatever its device.
std::vector<at::Generator> generators() {
  std::vector<at::Generator> out{at::globalContext().defaultGenerator(c10::Device(c10::kCPU))};
  const int64_t gpus = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  for (int64_t i = 0; i < gpus; ++i) {
    out.push_back(at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i))));
  }
  return out;
}

std::string rng_key(size_t index) { return index == 0 ? "rng" : "rng_cuda" + std::to_string(index - 1); }

}  // namespace

c10::Device checkpoint_map_location(const Segmentor& model) {
  for (const auto& p : model->parameters()) return p.device();
  return c10::Device(c10::kCPU);
}

void save_checkpoint(const fs::path& path, const Segmentor& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointInfo& info) {
  torch::serialize::OutputArchive archive;
  archive.write("format", torch::tensor(kFormatVersion));
  archive.write("iteration", torch::tensor(info.iteration));
  archive.write("config", string_tensor(info.config_yaml));
  archive.write("signature", string_tensor(model->signature()));
  torch::serialize::OutputArchive model_archive;
  model->save(model_archive);
  archive.write("model", model_archive);
  if (optimizer) {
    torch::serialize::OutputArchive optimizer_archive;
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  std::vector<at::Generator> gens = generators();
  for (size_t i = 0; i < gens.size(); ++i) {
    std::lock_guard<std::mutex> lock(gens[i].mutex());
    archive.write(rng_key(i), gens[i].get_state());
  }
  // Serialised in memory first: LibTorch's file writer throws from its destructor when the
  // disk fills mid-write, which ends the process; our writer reports and cleans up instead.
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_text_atomically(path, bytes.str());
}

torch::serialize::InputArchive read_checkpoint_archive(const fs::path& path, const c10::Device& device) {
  if (!fs::exists(path)) throw UnreadableCheckpoint("checkpoint " + path.string() + " does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string(), device);
  } catch (const c10::Error&) {
    throw UnreadableCheckpoint("checkpoint " + path.string() + " is not a readable attnseg checkpoint (corrupt?)");
  }
  return archive;
}

CheckpointInfo load_checkpoint(const fs::path& path, Segmentor& model,
                               torch::optim::Optimizer* optimizer) {
  // Without the map location, loading a tensor onto a parameter of another device would move
  // the parameter to the checkpoint's device.
  torch::serialize::InputArchive archive = read_checkpoint_archive(path, checkpoint_map_location(model));
  torch::Tensor t;
  if (!archive.try_read("signature", t)) {
    throw UnreadableCheckpoint("checkpoint " + path.string() + " is not an attnseg checkpoint (no signature)");
  }
  const std::string signature = tensor_string(t);
  if (signature != model->signature()) {
    throw Error("checkpoint " + path.string() + " was written for another model (" +
                first_difference(model->signature(), signature) +
                "; a run's own config.yaml, or its work directory, describes the model it trained)");
  }
  CheckpointInfo info;
  try {
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    model->load(model_archive);
    archive.read("iteration", t);
    info.iteration = t.item<int64_t>();
    archive.read("config", t);
    info.config_yaml = tensor_string(t);
    if (optimizer) {
      torch::serialize::InputArchive optimizer_archive;
      archive.read("optimizer", optimizer_archive);
      optimizer->load(optimizer_archive);
      // Each generator whose state was saved and exists here: a run resumed on a machine with
      // fewer GPUs restores those it has.
      std::vector<at::Generator> gens = generators();
      for (size_t i = 0; i < gens.size(); ++i) {
        if (!archive.try_read(rng_key(i), t)) continue;
        std::lock_guard<std::mutex> lock(gens[i].mutex());
        gens[i].set_state(t.to(torch::kCPU));
      }
    }
  } catch (const c10::Error& e) {
    throw UnreadableCheckpoint("checkpoint " + path.string() + " is incomplete or corrupt: " +
                std::string(e.what_without_backtrace()).substr(0, 200));
  }
  return info;
}

}  // namespace attnseg
