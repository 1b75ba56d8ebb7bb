// Files written atomically: to a temporary name beside the target that no other writer uses
// (`<name>.<pid>-<n>.tmp`), flushed to disk, then renamed over it, so a crash mid-write never
// leaves a half file where a whole one was. A failed write (full disk, permissions, a
// directory in the way) removes the temporary file, leaves the previous file as it was and
// throws attnseg::Error naming the target and the reason.
#pragma once

#include <opencv2/core.hpp>
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace attnseg {

// Writes `bytes` to `path` atomically.
void write_text_atomically(const std::filesystem::path& path, const std::string& bytes);
// Writes `image` (8-bit, BGR or one channel) to `path` as a PNG, atomically.
void write_png_atomically(const std::filesystem::path& path, const cv::Mat& image);

// A temporary name beside `path`, unique to this process and call, that
// remove_stale_temporaries recognises.
std::filesystem::path temporary_path(const std::filesystem::path& path);
// Moves the finished temporary file `tmp` to `path` (fsync of both and of the directory);
// for writers that produce the temporary file themselves. On failure `tmp` is removed.
void commit_file(const std::filesystem::path& tmp, const std::filesystem::path& path);
// The pid of the process whose temporary_path(<dir>/<target>) is the name `name`; 0 when `name`
// is not such a name.
pid_t temporary_owner(const std::string& name, const std::string& target);
// Removes the temporary files that writes into `dir` left behind when their process died
// (only call it while no other process writes there: see WorkDirLock); returns their names.
std::vector<std::string> remove_stale_temporaries(const std::filesystem::path& dir);

// Appends lines to a file, each write checked: a failure throws attnseg::Error naming the
// file and the reason (a log that silently stops growing would lie about the run).
class AppendFile {
 public:
  explicit AppendFile(std::filesystem::path path);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  void append(const std::string& bytes);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace attnseg
