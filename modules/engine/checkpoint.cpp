#include "engine/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <opencv2/imgcodecs.hpp>
#include <fcntl.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <sstream>

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
  const torch::Tensor c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
}

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
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

void commit(const fs::path& tmp, const fs::path& path) {
  fsync_path(tmp, O_RDONLY);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error("cannot move " + tmp.string() + " to " + path.string() + ": " + ec.message());
  fsync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path(), O_RDONLY | O_DIRECTORY);
}

}  // namespace

void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw Error("cannot write " + tmp.string());
  }
  commit(tmp, path);
}

void write_png_atomically(const fs::path& path, const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes)) throw Error("cannot encode " + path.string() + " as PNG");
  write_text_atomically(path, std::string(bytes.begin(), bytes.end()));
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
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("rng", generator.get_state());
  }
  const fs::path tmp = path.string() + ".tmp";
  try {
    archive.save_to(tmp.string());
  } catch (const c10::Error& e) {
    throw Error("cannot write checkpoint " + tmp.string() + ": " + e.what_without_backtrace());
  }
  commit(tmp, path);
}

CheckpointInfo load_checkpoint(const fs::path& path, Segmentor& model,
                               torch::optim::Optimizer* optimizer) {
  if (!fs::exists(path)) throw Error("checkpoint " + path.string() + " does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
  } catch (const c10::Error&) {
    throw Error("checkpoint " + path.string() + " is not a readable attnseg checkpoint (corrupt?)");
  }
  torch::Tensor t;
  if (!archive.try_read("signature", t)) {
    throw Error("checkpoint " + path.string() + " is not an attnseg checkpoint (no signature)");
  }
  const std::string signature = tensor_string(t);
  if (signature != model->signature()) {
    throw Error("checkpoint " + path.string() + " was written for another model (" +
                first_difference(model->signature(), signature) + ")");
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
      archive.read("rng", t);
      auto generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(t);
    }
  } catch (const c10::Error& e) {
    throw Error("checkpoint " + path.string() + " is incomplete or corrupt: " +
                std::string(e.what_without_backtrace()).substr(0, 200));
  }
  return info;
}

}  // namespace attnseg
