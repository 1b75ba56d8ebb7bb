// Helpers shared by the tests: a temporary directory, running the attnseg binary, a tiny
// config on a tiny synthetic dataset, and the message of an expected error.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace attnseg::test {

// The message of the attnseg::Error that `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("attnseg_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line: its exit code and its output (stdout and stderr together).
inline CommandResult run_shell(const std::string& command_line) {
  const std::string command = command_line + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  CommandResult result{-1, {}};
  if (!pipe) return result;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) result.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// Runs `attnseg <args>` (args already shell-quoted where needed) in the source directory,
// with `env` ("NAME=value ...") prepended to its environment.
inline CommandResult run_attnseg(const std::string& args, const std::string& env = "") {
  return run_shell("cd '" ATTNSEG_SOURCE_DIR "' && " + env + " '" ATTNSEG_BINARY "' " + args);
}

// Starts `attnseg <args>` in the background in the source directory, with `env`
// ("NAME=value ...") prepended, stdout and stderr to `log`; returns its pid (the shell execs
// the binary, so a signal to the pid reaches attnseg itself).
inline pid_t spawn_attnseg(const std::string& args, const fs::path& log, const std::string& env = "") {
  const std::string command = "cd '" ATTNSEG_SOURCE_DIR "' && " + (env.empty() ? "" : "export " + env + " && ") +
                              "exec '" ATTNSEG_BINARY "' " + args + " > '" + log.string() + "' 2>&1";
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  if (posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0) return -1;
  return pid;
}

// The exit code of a finished child, or 128 + the signal that ended it.
inline int wait_exit_code(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0;
  if (fd >= 0) ::close(fd);
  return ok ? ntohs(addr.sin_port) : 29500;
}

// Whether a failing command may print a report (`data check`'s) before its error line.
enum class Report { kNone, kAllowed };

// One line starting with "error:" that contains every part, the rest of the output log lines
// only (and a report where allowed); a non-zero exit that is not a crash.
inline void expect_clean_error(const CommandResult& r, const std::vector<std::string>& parts,
                               Report report = Report::kNone) {
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << r.output;
  std::string error_line, other_lines;
  int error_lines = 0;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("error: ", 0) == 0) {
      error_line = line;
      ++error_lines;
    } else if (report == Report::kNone && !(line.size() > 11 && line[0] == '[' && line[9] == ']' && line[10] == ' ')) {
      other_lines += line + "\n";  // neither the error nor a log line ("[12:34:56] info ..."): a library's noise
    }
  }
  EXPECT_EQ(error_lines, 1) << r.output;
  EXPECT_EQ(other_lines, "") << "lines beside the error and the log:\n" << r.output;
  for (const auto& p : parts) EXPECT_NE(error_line.find(p), std::string::npos) << "missing '" << p << "' in: " << r.output;
}

inline void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The hidden entries beside `dir` that name it: the stages synth builds a dataset in
// (`.<name>.<pid>-<n>.tmp`).
inline std::vector<std::string> stages_beside(const fs::path& dir) {
  std::vector<std::string> found;
  const std::string prefix = "." + dir.filename().string() + ".";
  for (const auto& e : fs::directory_iterator(dir.parent_path())) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) found.push_back(e.path().string());
  }
  return found;
}

// A config for a tiny, fast model on `data_root`, layered on the repository's configs.
inline std::string tiny_config(const fs::path& data_root, const std::string& block = "ccnet") {
  return "_base_: '" ATTNSEG_SOURCE_DIR "/configs/ccnet_r18_synthetic.yaml'\n"
         "model:\n"
         "  backbone: {width: 0.125}\n"
         "  head: {channels: 16}\n"
         "  attention: {type: " + block + "}\n"
         "  aux_head: {channels: 16}\n"
         "data:\n"
         "  root: '" + data_root.string() + "'\n"
         "  batch_size: 2\n"
         "  workers: 1\n"
         "  train_pipeline: {crop_size: [32, 192]}\n"
         "train:\n"
         "  iters: 4\n"
         "  warmup_iters: 2\n"
         "  checkpoint_interval: 2\n"
         "  log_interval: 1\n"
         "runtime: {threads: 1}\n"
         "eval: {speed_warmup: 1, speed_runs: 2}\n";
}

// A .npy file written by encode_npy: its shape and its float32 values.
struct Npy {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

inline Npy read_npy(const fs::path& file) {
  const std::string bytes = read_file(file);
  Npy npy;
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return npy;
  const size_t header = static_cast<uint8_t>(bytes[8]) | static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8;
  const std::string dict = bytes.substr(10, header);
  const size_t open = dict.find("'shape': (") + 10, close = dict.find(')', open);
  std::stringstream dims(dict.substr(open, close - open));
  for (std::string d; std::getline(dims, d, ',');) {
    if (d.find_first_not_of(' ') != std::string::npos) npy.shape.push_back(std::stoll(d));
  }
  npy.values.resize((bytes.size() - 10 - header) / sizeof(float));
  std::memcpy(npy.values.data(), bytes.data() + 10 + header, npy.values.size() * sizeof(float));
  return npy;
}

// `train` overrides for a tiny model whose predictions mean something when two routes to them
// are compared: 2 steps at lr 1e-5 leave the weights about where they started, and the
// predictions vary from pixel to pixel over most classes, where 4 steps at the config's rate
// already make every pixel background.
inline const std::string kVariedPredictions =
    " train.iters=2 train.warmup_iters=0 train.lr=0.00001 train.min_lr=0.000001 train.checkpoint_interval=1";

// A fixture for tests that run the executable: a tiny synthetic dataset made once for the
// suite, a temporary directory per test, and `config(block)` writing a tiny config there.
class TinyDataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    const auto r = run_attnseg("synth --out '" + data_->path().string() + "' --train 8 --val 3 --size 32");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }
  // The quoted path of a tiny config for `block` on the suite's dataset.
  std::string config(const std::string& block = "ccnet") {
    const fs::path p = dir / (block + ".yaml");
    write_file(p, tiny_config(data_->path(), block));
    return "'" + p.string() + "'";
  }
  inline static TempDir* data_ = nullptr;
  TempDir dir;
};

}  // namespace attnseg::test
