#include "backbone/pretrained.h"

#include <torch/serialize.h>

#include <fstream>
#include <iterator>
#include <map>

#include "core/atomic_file.h"
#include "core/error.h"

namespace attnseg {

namespace {

namespace fs = std::filesystem;

// The backbone's parameters and buffers by name.
std::map<std::string, at::Tensor> backbone_tensors(ResNet& backbone) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : backbone->named_parameters()) tensors[p.key()] = p.value();
  for (const auto& b : backbone->named_buffers()) tensors[b.key()] = b.value();
  return tensors;
}

// name -> tensor of a file written by tools/convert_torchvision.py or save_backbone_weights;
// `what` ("pretrained backbone FILE") starts every error.
std::map<std::string, at::Tensor> read_tensor_dict(const fs::path& file, const std::string& what) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(what + " does not exist or cannot be read");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  const std::string expected =
      " (expected a plain name -> tensor dictionary saved by torch.save; a torchvision checkpoint "
      "must be converted first: tools/convert_torchvision.py)";
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error&) {  // LibTorch's message names its own internals, not the file
    throw Error(what + " is not a torch.save file this reads" + expected);
  }
  if (!value.isGenericDict()) throw Error(what + " holds something else" + expected);
  std::map<std::string, at::Tensor> out;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor()) {
      throw Error(what + " holds an entry that is not name -> tensor");
    }
    out[entry.key().toStringRef()] = entry.value().toTensor();
  }
  return out;
}

// Copies `given` (backbone names) into the backbone; every name and shape must match.
void assign(ResNet& backbone, const std::map<std::string, at::Tensor>& given,
            const std::string& source) {
  std::map<std::string, at::Tensor> targets = backbone_tensors(backbone);
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [name, target] : targets) {
    const auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != target.sizes()) {
      misshaped.push_back(name + " " + c10::str(it->second.sizes()) + " vs " +
                          c10::str(target.sizes()));
    }
  }
  for (const auto& [name, tensor] : given) {
    if (targets.count(name) == 0) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    auto list = [](const std::vector<std::string>& names) {
      std::string s;
      for (size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", " : "") + names[i];
      if (names.size() > 8) s += ", ... (" + std::to_string(names.size()) + " in all)";
      return s;
    };
    std::string message = source + " does not fit this backbone:";
    if (!missing.empty()) message += " missing " + list(missing) + ";";
    if (!unexpected.empty()) message += " unexpected " + list(unexpected) + ";";
    if (!misshaped.empty()) message += " other shapes " + list(misshaped) + ";";
    throw Error(message);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.copy_(given.at(name));
}

}  // namespace

void save_backbone_weights(ResNet& backbone, const fs::path& file) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [name, tensor] : backbone_tensors(backbone)) dict.insert(name, tensor.detach());
  const std::vector<char> bytes = torch::pickle_save(dict);
  write_text_atomically(file, std::string(bytes.begin(), bytes.end()));
}

void load_backbone_weights(ResNet& backbone, const fs::path& file) {
  const std::string what = "pretrained backbone " + file.string();
  assign(backbone, read_tensor_dict(file, what), what);
}

}  // namespace attnseg
