// A block's options come from its Options struct alone: each struct lists the fields a config
// may set (`fields`, in the LibTorch TORCH_ARG style, defaults where they are declared) and
// checks their values (`check`). The registry reads configs and prints defaults through
// these two, so an option is declared once and a block's registry row is one line.
#pragma once

#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "config/config.h"

namespace attnseg {

// The options of a block on `channels` channels as `node` sets them: every field read (a
// wrong type names the key), any other key rejected, the values checked (c10::Error).
// Builds no module and draws no random number.
template <typename Options>
Options read_options(int64_t channels, const ConfigNode& node) {
  Options options(channels);
  options.fields([&](const char* key, auto& value) { value = node.get<std::decay_t<decltype(value)>>(key, value); });
  node.finish();
  options.check();
  return options;
}

// "recurrence=2 reduction=8 zero_init=true", "heads=8 embedding_size=[32,32]": each field
// with its default.
template <typename Options>
std::string option_defaults(int64_t channels) {
  Options options(channels);
  std::ostringstream out;
  out << std::boolalpha;
  options.fields([&](const char* key, const auto& value) {
    out << (out.tellp() > 0 ? " " : "") << key << "=";
    if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::vector<int64_t>>) {
      out << "[";
      for (size_t i = 0; i < value.size(); ++i) out << (i ? "," : "") << value[i];
      out << "]";
    } else {
      out << value;
    }
  });
  return out.str();
}

}  // namespace attnseg
