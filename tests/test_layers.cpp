// The include graph points one way: core ← config ← {data, attention, backbone} ← head ←
// engine ← {demo, api (the public interface's implementation)} ← app. A file may include its own layer and those below it, never one above
// (core, attention, backbone or data reaching up into engine or app is what this forbids).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>

namespace {

namespace fs = std::filesystem;

const std::map<std::string, int>& layers() {
  static const std::map<std::string, int> rank{{"core", 0},     {"config", 1},   {"data", 2},
                                               {"attention", 2}, {"backbone", 2}, {"head", 3},
                                               {"engine", 4},   {"demo", 5},     {"api", 5},
                                               {"attnseg", 5},  {"app", 6}};
  return rank;
}

// The layer a project include names ("engine/trainer.h" → engine; an app header → app).
std::string layer_of_include(const std::string& include) {
  const size_t slash = include.find('/');
  if (slash == std::string::npos) return "app";  // app/ includes its own headers by bare name
  return include.substr(0, slash);
}

TEST(Layers, NoFileIncludesALayerAboveItsOwn) {
  const fs::path root(ATTNSEG_SOURCE_DIR);
  const std::regex quoted_include("^\\s*#\\s*include\\s+\"([^\"]+)\"");
  int files = 0, includes = 0;
  for (const auto& [dir, own] : std::vector<std::pair<fs::path, std::string>>{
           {root / "modules" / "core", "core"},         {root / "modules" / "config", "config"},
           {root / "modules" / "data", "data"},         {root / "modules" / "attention", "attention"},
           {root / "modules" / "backbone", "backbone"}, {root / "modules" / "head", "head"},
           {root / "modules" / "engine", "engine"},     {root / "modules" / "demo", "demo"},
           {root / "modules" / "api", "api"},           {root / "app", "app"}}) {
    ASSERT_TRUE(fs::is_directory(dir)) << dir;
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".h" && ext != ".cpp") continue;
      ++files;
      std::ifstream in(entry.path());
      std::smatch m;
      for (std::string line; std::getline(in, line);) {
        if (!std::regex_search(line, m, quoted_include)) continue;
        if (m[1] == "pch.h") continue;
        const std::string target = layer_of_include(m[1]);
        ++includes;
        const auto found = layers().find(target);
        ASSERT_NE(found, layers().end()) << entry.path() << " includes " << m[1] << " of no known layer";
        EXPECT_LE(found->second, layers().at(own))
            << entry.path().lexically_relative(root) << " (" << own << ") includes " << m[1] << " (" << target << ")";
      }
    }
  }
  EXPECT_GT(files, 50);
  EXPECT_GT(includes, 100);
}

// include/attnseg/ is what `cmake --install` ships: it may include LibTorch, OpenCV and the
// standard library, never a project header (which is not installed) nor spdlog, fmt, yaml-cpp
// or CLI11 (whose versions would then bind the user's program).
TEST(Layers, ThePublicHeadersIncludeNoInternalOrLoggingHeader) {
  const fs::path dir = fs::path(ATTNSEG_SOURCE_DIR) / "include" / "attnseg";
  const std::regex any_include("^\\s*#\\s*include\\s+([<\"])([^>\"]+)[>\"]");
  int headers = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++headers;
    std::ifstream in(entry.path());
    std::smatch m;
    for (std::string line; std::getline(in, line);) {
      if (!std::regex_search(line, m, any_include)) continue;
      const std::string name = m[2];
      EXPECT_EQ(m[1], "<") << entry.path().filename() << " includes \"" << name << "\", a project header";
      const bool allowed = name.rfind("ATen/", 0) == 0 || name.rfind("c10/", 0) == 0 ||
                           name.rfind("opencv2/", 0) == 0 || name.find('/') == std::string::npos;
      EXPECT_TRUE(allowed) << entry.path().filename() << " includes <" << name << ">";
    }
  }
  EXPECT_GE(headers, 1);
}

}  // namespace
