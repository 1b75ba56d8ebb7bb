// Layered YAML configuration in the style of mmsegmentation: a file may name `_base_` files
// (a path or a list, relative to itself) whose trees it deep-merges over, and any leaf can be
// overridden from the command line as `dotted.key=value`. Every leaf remembers the file that
// set it, so a bad key or value is reported with its origin.
#pragma once

#include <yaml-cpp/yaml.h>

#include <array>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace attnseg {

class Config;

// A view on one mapping of the configuration. Reading a key marks it as accepted; finish()
// then rejects every key that nothing read, listing the accepted ones.
class ConfigNode {
 public:
  ConfigNode(const Config* config, YAML::Node node, std::string path);

  template <typename T>
  T get(const std::string& key, const T& fallback) const;
  template <typename T>
  T require(const std::string& key) const;
  // A list of exactly N values; `fallback` when absent.
  template <typename T, size_t N>
  std::array<T, N> get_array(const std::string& key, const std::array<T, N>& fallback) const;
  // A nested mapping (empty when absent); the key is accepted.
  ConfigNode child(const std::string& key) const;
  bool has(const std::string& key) const;
  // The keys present in this mapping, in file order.
  std::vector<std::string> keys() const;
  // Throws naming the first key that no get/require/child asked for.
  void finish() const;

  // "model.attention.type" for key "type" under "model.attention".
  std::string key_path(const std::string& key) const;
  // "model.attention.type (configs/x.yaml)": how an error message names a key.
  std::string where(const std::string& key) const;
  const std::string& path() const { return path_; }

 private:
  template <typename T>
  T convert(const std::string& key, const YAML::Node& value) const;
  // Every number a config gives is finite and, unless 0, of a magnitude a float holds
  // (tensors compute in float: 1e-300 would silently become 0 there).
  void check_number(const std::string& key, double value, const std::string& shown) const;

  const Config* config_;
  YAML::Node node_;
  std::string path_;
  std::shared_ptr<std::set<std::string>> accepted_;
};

class Config {
 public:
  // Loads `file` with its `_base_` chain, then applies `overrides` ("a.b=value", value in YAML).
  static Config load(const std::filesystem::path& file,
                     const std::vector<std::string>& overrides = {});
  // A configuration from YAML text (used for checkpoints and tests), then `overrides` as load's.
  static Config from_string(const std::string& yaml, const std::string& origin,
                            const std::vector<std::string>& overrides = {});

  ConfigNode root() const { return ConfigNode(this, tree_, ""); }
  // The file (or "command line") that set the value at a dotted path, or its nearest parent.
  std::string origin(const std::string& dotted) const;
  std::string dump() const;
  const std::filesystem::path& file() const { return file_; }

 private:
  void apply_override(const std::string& assignment);

  YAML::Node tree_;
  std::map<std::string, std::string> origins_;
  std::filesystem::path file_;
};

// --- template definitions -----------------------------------------------------------------

template <typename T>
struct ConfigTypeName;
template <> struct ConfigTypeName<int64_t> { static constexpr const char* value = "an integer"; };
template <> struct ConfigTypeName<int> { static constexpr const char* value = "an integer"; };
template <> struct ConfigTypeName<double> { static constexpr const char* value = "a number"; };
template <> struct ConfigTypeName<bool> { static constexpr const char* value = "true or false"; };
template <> struct ConfigTypeName<std::string> { static constexpr const char* value = "a string"; };
template <> struct ConfigTypeName<std::vector<int64_t>> {
  static constexpr const char* value = "a list of integers";
};
template <> struct ConfigTypeName<std::vector<double>> {
  static constexpr const char* value = "a list of numbers";
};
template <> struct ConfigTypeName<std::vector<std::string>> {
  static constexpr const char* value = "a list of strings";
};

template <typename T>
T ConfigNode::convert(const std::string& key, const YAML::Node& value) const {
  try {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!value.IsScalar()) throw YAML::BadConversion(value.Mark());
    }
    if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, int>) {
      // yaml-cpp reads "1e3" or "2.5" as an integer error, which is what we want; it would
      // also accept "true" for nothing, so only scalars pass.
      if (!value.IsScalar()) throw YAML::BadConversion(value.Mark());
    }
    T result = value.as<T>();
    if constexpr (std::is_same_v<T, double>) {
      check_number(key, result, value.Scalar());
    } else if constexpr (std::is_same_v<T, std::vector<double>>) {
      for (size_t i = 0; i < result.size(); ++i) check_number(key, result[i], value[i].Scalar());
    }
    return result;
  } catch (const YAML::Exception&) {
    std::string shown;
    if (value.IsScalar()) {
      shown = "'" + value.Scalar() + "'";
    } else {
      YAML::Emitter out;
      out << YAML::Flow << value;
      shown = out.c_str();
    }
    throw Error("config key " + where(key) + " must be " + ConfigTypeName<T>::value + ", got " +
                shown);
  }
}

template <typename T>
T ConfigNode::get(const std::string& key, const T& fallback) const {
  accepted_->insert(key);
  if (!node_ || !node_.IsMap() || !node_[key] || node_[key].IsNull()) return fallback;
  return convert<T>(key, node_[key]);
}

template <typename T>
T ConfigNode::require(const std::string& key) const {
  accepted_->insert(key);
  if (!node_ || !node_.IsMap() || !node_[key] || node_[key].IsNull()) {
    throw Error("config key " + where(key) + " is required but missing");
  }
  return convert<T>(key, node_[key]);
}

template <typename T, size_t N>
std::array<T, N> ConfigNode::get_array(const std::string& key, const std::array<T, N>& fallback) const {
  const std::vector<T> value = get<std::vector<T>>(key, std::vector<T>(fallback.begin(), fallback.end()));
  if (value.size() != N) {
    throw Error("config key " + where(key) + " must list " + std::to_string(N) + " values, got " +
                std::to_string(value.size()));
  }
  std::array<T, N> out{};
  std::copy(value.begin(), value.end(), out.begin());
  return out;
}

}  // namespace attnseg
