#include "core/atomic_file.h"

#include <fcntl.h>
#include <opencv2/imgcodecs.hpp>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <regex>

#include "core/error.h"
#include "core/fault.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string reason(int error) { return std::strerror(error); }

// Writes all of `bytes` to `fd`; false with errno set on failure.
bool write_all(int fd, const char* bytes, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

fs::path temporary_path(const fs::path& path) {
  static std::atomic<uint64_t> counter{0};
  return path.string() + "." + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".tmp";
}

void commit_file(const fs::path& tmp, const fs::path& path) {
  fsync_path(tmp, O_RDONLY);
  kill_here_if_asked("commit", path);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path.string() + ": " + reason(error));
  }
  fsync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path(), O_RDONLY | O_DIRECTORY);
}

void write_text_atomically(const fs::path& path, const std::string& bytes) {
  const fs::path tmp = temporary_path(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write " + path.string() + ": " + reason(errno));
  int error = 0;
  if (disk_full_for(path)) {
    (void)write_all(fd, bytes.data(), bytes.size() / 2);
    error = ENOSPC;
  } else if (!write_all(fd, bytes.data(), bytes.size()) || ::fsync(fd) != 0) {
    error = errno;
  }
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) {
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path.string() + ": " + reason(error));
  }
  commit_file(tmp, path);
}

void write_png_atomically(const fs::path& path, const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes)) throw Error("cannot encode " + path.string() + " as PNG");
  write_text_atomically(path, std::string(bytes.begin(), bytes.end()));
}

namespace {
// temporary_path's names: <target>.<pid>-<n>.tmp, and .<ext> after that for writers that need
// the extension last.
const std::regex& temporary_name() {
  static const std::regex pattern(R"((.+)\.([0-9]{1,9})-[0-9]+\.tmp(\.[A-Za-z0-9]+)?)");
  return pattern;
}
}  // namespace

pid_t temporary_owner(const std::string& name, const std::string& target) {
  std::smatch m;
  if (!std::regex_match(name, m, temporary_name()) || m[1] != target) return 0;
  return static_cast<pid_t>(std::stol(m[2]));
}

std::vector<std::string> remove_stale_temporaries(const fs::path& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file(ec) || !std::regex_match(name, temporary_name())) continue;
    if (fs::remove(entry.path(), ec)) removed.push_back(name);
  }
  return removed;
}

AppendFile::AppendFile(fs::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("cannot write " + path_.string() + ": " + reason(errno));
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::append(const std::string& bytes) {
  if (!write_all(fd_, bytes.data(), bytes.size())) {
    throw Error("cannot write " + path_.string() + ": " + reason(errno));
  }
}

}  // namespace attnseg
