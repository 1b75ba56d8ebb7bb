#include "config/config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace attnseg {
namespace {

namespace fs = std::filesystem;
constexpr int kMaxBaseDepth = 8;

YAML::Node parse_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read config file " + file.string());
  std::stringstream text;
  text << in.rdbuf();
  try {
    YAML::Node node = YAML::Load(text.str());
    if (node.IsNull()) return YAML::Node(YAML::NodeType::Map);
    if (!node.IsMap()) throw Error("config file " + file.string() + " must hold a mapping at top level");
    return node;
  } catch (const YAML::ParserException& e) {
    throw Error("malformed YAML in " + file.string() + ":" + std::to_string(e.mark.line + 1) + ":" +
                std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

// Deep-merges `over` into `base` (maps merge, everything else replaces) and, when `origins` is
// given, records `origin` for every key that `over` sets.
void merge(YAML::Node base, const YAML::Node& over, const std::string& prefix,
           const std::string& origin, std::map<std::string, std::string>* origins) {
  for (const auto& item : over) {
    const std::string key = item.first.as<std::string>();
    const std::string path = join(prefix, key);
    const YAML::Node& value = item.second;
    if (value.IsMap()) {
      if (!base[key] || !base[key].IsMap()) base[key] = YAML::Node(YAML::NodeType::Map);
      merge(base[key], value, path, origin, origins);
    } else {
      base[key] = YAML::Clone(value);
    }
    if (origins) (*origins)[path] = origin;
  }
}

YAML::Node load_layered(const fs::path& file, int depth, std::map<std::string, std::string>& origins) {
  if (depth > kMaxBaseDepth) {
    throw Error("config file " + file.string() + ": _base_ chain deeper than " +
                std::to_string(kMaxBaseDepth) + " levels (a cycle?)");
  }
  YAML::Node own = parse_file(file);
  YAML::Node result(YAML::NodeType::Map);
  if (own["_base_"]) {
    std::vector<std::string> bases;
    const YAML::Node b = own["_base_"];
    try {
      if (b.IsScalar()) {
        bases.push_back(b.as<std::string>());
      } else {
        bases = b.as<std::vector<std::string>>();
      }
    } catch (const YAML::Exception&) {
      throw Error("config key _base_ (" + file.string() + ") must be a path or a list of paths");
    }
    for (const auto& base : bases) {
      const fs::path base_path = file.parent_path() / base;
      if (!fs::exists(base_path)) {
        throw Error("config file " + file.string() + ": _base_ file " + base_path.string() +
                    " does not exist");
      }
      // The base records where each of its keys came from (it may have bases of its own).
      merge(result, load_layered(base_path, depth + 1, origins), "", "", nullptr);
    }
    own.remove("_base_");
  }
  merge(result, own, "", file.string(), &origins);
  return result;
}

}  // namespace

// --- ConfigNode --------------------------------------------------------------------------------

ConfigNode::ConfigNode(const Config* config, YAML::Node node, std::string path)
    : config_(config),
      node_(std::move(node)),
      path_(std::move(path)),
      accepted_(std::make_shared<std::set<std::string>>()) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) {
    throw Error("config key " + (path_.empty() ? std::string("<root>") : path_) + " (" +
                config_->origin(path_) + ") must be a mapping");
  }
}

std::string ConfigNode::key_path(const std::string& key) const { return join(path_, key); }

void ConfigNode::check_number(const std::string& key, double value, const std::string& shown) const {
  if (!std::isfinite(value)) {
    throw Error("config key " + where(key) + " must be a finite number, got '" + shown + "'");
  }
  const double magnitude = std::fabs(value);
  if (value != 0 && (magnitude < std::numeric_limits<float>::min() || magnitude > std::numeric_limits<float>::max())) {
    throw Error("config key " + where(key) + " is '" + shown + "', beyond what a float holds (0 or a magnitude "
                "between 1.2e-38 and 3.4e+38)");
  }
}

std::string ConfigNode::where(const std::string& key) const {
  return "'" + key_path(key) + "' (" + config_->origin(key_path(key)) + ")";
}

bool ConfigNode::has(const std::string& key) const {
  return node_ && node_.IsMap() && node_[key] && !node_[key].IsNull();
}

std::vector<std::string> ConfigNode::keys() const {
  std::vector<std::string> out;
  if (!node_ || !node_.IsMap()) return out;
  for (const auto& item : node_) out.push_back(item.first.as<std::string>());
  return out;
}

ConfigNode ConfigNode::child(const std::string& key) const {
  accepted_->insert(key);
  if (!has(key)) return ConfigNode(config_, YAML::Node(YAML::NodeType::Map), key_path(key));
  return ConfigNode(config_, node_[key], key_path(key));
}

void ConfigNode::finish() const {
  if (!node_ || !node_.IsMap()) return;
  for (const auto& item : node_) {
    const std::string key = item.first.as<std::string>();
    if (accepted_->count(key)) continue;
    std::string accepted;
    for (const auto& a : *accepted_) accepted += (accepted.empty() ? "" : ", ") + a;
    throw Error("unknown config key " + where(key) + "; accepted keys" +
                (path_.empty() ? std::string() : " under '" + path_ + "'") + ": " + accepted);
  }
}

// --- Config ------------------------------------------------------------------------------------

Config Config::load(const fs::path& file, const std::vector<std::string>& overrides) {
  if (!fs::exists(file)) throw Error("config file " + file.string() + " does not exist");
  Config config;
  config.file_ = file;
  config.tree_ = load_layered(file, 0, config.origins_);
  for (const auto& assignment : overrides) config.apply_override(assignment);
  return config;
}

Config Config::from_string(const std::string& yaml, const std::string& origin,
                           const std::vector<std::string>& overrides) {
  Config config;
  config.file_ = origin;
  YAML::Node node;
  try {
    node = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw Error("malformed YAML in " + origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  if (!node.IsMap()) throw Error("config in " + origin + " must hold a mapping at top level");
  config.tree_ = YAML::Node(YAML::NodeType::Map);
  merge(config.tree_, node, "", origin, &config.origins_);
  for (const auto& assignment : overrides) config.apply_override(assignment);
  return config;
}

void Config::apply_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error("override '" + assignment + "' must have the form dotted.key=value");
  }
  const std::string dotted = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw Error("override '" + assignment + "': value is not valid YAML: " + e.msg);
  }
  std::vector<std::string> parts;
  std::stringstream ss(dotted);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) throw Error("override '" + assignment + "' has an empty key segment");
    parts.push_back(part);
  }
  // Walk with explicit node copies: yaml-cpp's operator[] on a non-const node creates keys.
  std::vector<YAML::Node> chain{tree_};
  std::string section;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    section = join(section, parts[i]);
    YAML::Node parent = chain.back();
    YAML::Node next = parent[parts[i]];
    if (next.IsDefined() && !next.IsNull() && !next.IsMap()) {
      throw Error("override '" + assignment + "': '" + parts[i] + "' is not a mapping");
    }
    if (!next.IsDefined() || next.IsNull()) {
      // A section the override creates comes from the command line too: an unknown one is
      // reported as the command line's, not the config file's.
      parent[parts[i]] = YAML::Node(YAML::NodeType::Map);
      origins_[section] = "command line";
    }
    chain.push_back(parent[parts[i]]);
  }
  YAML::Node parent = chain.back();
  const YAML::Node old = parent[parts.back()];
  if (old.IsDefined() && old.IsMap() && !value.IsMap()) {
    throw Error("override '" + assignment + "': '" + dotted + "' is a mapping, set its keys instead");
  }
  parent[parts.back()] = value;
  origins_[dotted] = "command line";
}

std::string Config::origin(const std::string& dotted) const {
  std::string key = dotted;
  while (!key.empty()) {
    const auto it = origins_.find(key);
    if (it != origins_.end()) return it->second;
    const auto dot = key.rfind('.');
    if (dot == std::string::npos) break;
    key = key.substr(0, dot);
  }
  return file_.string();
}

std::string Config::dump() const {
  YAML::Emitter out;
  out << tree_;
  return out.c_str();
}

}  // namespace attnseg
