// Numbers recorded from the papers' reference implementations (tools/reference/, run once
// with Debian's python3-torch): named float64 tensors in tests/fixtures/<block>.json, plus
// the command that wrote them. Loading one and copying its weights into a block lets a
// test compare our block with the reference on the same input.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace attnseg::test {

struct Fixture {
  std::string command;    // how the file was produced
  std::string reference;  // repository@commit and file of the reference code
  std::map<std::string, at::Tensor> tensors;  // float64

  const at::Tensor& operator[](const std::string& name) const {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw std::runtime_error("fixture has no tensor '" + name + "'");
    return it->second;
  }
};

inline Fixture load_fixture(const std::string& block) {
  const std::string path = std::string(ATTNSEG_SOURCE_DIR) + "/tests/fixtures/" + block + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  const nlohmann::json j = nlohmann::json::parse(in);
  Fixture f;
  f.command = j.at("command").get<std::string>();
  f.reference = j.at("reference").get<std::string>();
  for (const auto& [name, t] : j.at("tensors").items()) {
    const auto shape = t.at("shape").get<std::vector<int64_t>>();
    const auto data = t.at("data").get<std::vector<double>>();
    at::Tensor tensor = at::empty(shape, at::kDouble);
    if (static_cast<int64_t>(data.size()) != tensor.numel()) {
      throw std::runtime_error("fixture " + path + ": tensor '" + name + "' has the wrong size");
    }
    std::copy(data.begin(), data.end(), tensor.data_ptr<double>());
    f.tensors.emplace(name, tensor);
  }
  return f;
}

// The module's parameters and floating buffers in `type` on `device`, its integer buffers left
// as they are. LibTorch's Module::to(dtype) converts integer buffers too (Python's converts
// floating ones only): reformer's int64 rotation seed rounded in float to another seed, and a
// float and a float64 pass hashed with different rotations.
inline void to_floating(torch::nn::Module& module, const at::Device& device, at::ScalarType type) {
  module.to(device);
  at::NoGradGuard no_grad;
  for (at::Tensor& p : module.parameters()) p.set_data(p.to(type));
  for (at::Tensor& b : module.buffers()) {
    if (b.is_floating_point()) b.set_data(b.to(type));
  }
}

// Copies fixture tensors into a module's parameters and buffers, by {our name, fixture
// name}; every parameter and buffer of the module must be named, so a weight the
// reference did not provide cannot silently keep its random value.
inline void copy_weights(torch::nn::Module& module, const Fixture& fixture,
                         const std::vector<std::pair<std::string, std::string>>& names) {
  std::map<std::string, at::Tensor> ours;
  for (const auto& p : module.named_parameters()) ours.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers()) ours.emplace(b.key(), b.value());
  std::map<std::string, bool> set;
  at::NoGradGuard no_grad;
  for (const auto& [our, theirs] : names) {
    const auto it = ours.find(our);
    if (it == ours.end()) throw std::runtime_error("module has no parameter or buffer '" + our + "'");
    const at::Tensor& src = fixture[theirs];
    if (src.numel() != it->second.numel()) {
      throw std::runtime_error("'" + our + "' and fixture '" + theirs + "' differ in size");
    }
    it->second.copy_(src.reshape(it->second.sizes()));
    set[our] = true;
  }
  for (const auto& [name, tensor] : ours) {
    // A BN's batch counter is not a weight (and `module->to(kDouble)` makes it floating).
    const bool counter = name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0;
    if (!set.count(name) && !counter && tensor.numel() > 0 && tensor.is_floating_point()) {
      throw std::runtime_error("parameter or buffer '" + name + "' not set from the fixture");
    }
  }
}

inline double max_relative_error(const at::Tensor& out, const at::Tensor& ref) {
  return ((out.to(at::kDouble) - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item<double>();
}

// Our CBAM's names for the parameters of Jongchan/attention-module's CBAM.
inline const std::vector<std::pair<std::string, std::string>> kCbamFixtureNames{
    {"fc1.weight", "ChannelGate.mlp.1.weight"}, {"fc1.bias", "ChannelGate.mlp.1.bias"},
    {"fc2.weight", "ChannelGate.mlp.3.weight"}, {"fc2.bias", "ChannelGate.mlp.3.bias"},
    {"spatial.weight", "SpatialGate.spatial.conv.weight"}, {"norm.weight", "SpatialGate.spatial.bn.weight"},
    {"norm.bias", "SpatialGate.spatial.bn.bias"}, {"norm.running_mean", "SpatialGate.spatial.bn.running_mean"},
    {"norm.running_var", "SpatialGate.spatial.bn.running_var"}};

}  // namespace attnseg::test
