#include "core/work_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <spdlog/spdlog.h>

#include "core/atomic_file.h"
#include "core/error.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

std::string read_all(int fd) {
  std::string text;
  char buffer[256];
  ::lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string now_text() {
  const std::time_t t = std::time(nullptr);
  std::tm local{};
  localtime_r(&t, &local);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S", &local);
  return out;
}

}  // namespace

WorkDirLock::WorkDirLock(const fs::path& dir, const std::string& command) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) {
    throw Error("cannot create work directory " + dir.string() + (ec ? ": " + ec.message() : ""));
  }
  const fs::path file = dir / kFileName;
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("cannot lock work directory " + dir.string() + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const std::string holder = read_all(fd_);
    ::close(fd_);
    fd_ = -1;
    if (error == EWOULDBLOCK) {
      throw Error("work directory " + dir.string() + " is in use by another run (" +
                  (holder.empty() ? std::string("holder unknown") : holder) +
                  "); wait for it to end or choose another --work-dir");
    }
    throw Error("cannot lock work directory " + dir.string() + ": " + std::strerror(error));
  }
  taken_over_ = read_all(fd_);
  const std::string record =
      "pid " + std::to_string(::getpid()) + " (" + command + ", started " + now_text() + ")\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, record.data(), record.size(), 0) < 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    throw Error("cannot write " + file.string() + ": " + std::strerror(error));
  }
}

WorkDirLock::~WorkDirLock() {
  if (fd_ < 0) return;
  // Emptied before release: a lock file that still names a run was left by a dead one.
  if (::ftruncate(fd_, 0) != 0) { /* the next run will report a take-over; nothing else to do */ }
  ::close(fd_);
}

std::unique_ptr<WorkDirLock> claim_work_dir(const fs::path& dir, const std::string& command) {
  auto lock = std::make_unique<WorkDirLock>(dir, command);
  if (!lock->taken_over().empty()) {
    spdlog::warn("took over the lock of {} in {}, which is no longer running", lock->taken_over(), dir.string());
  }
  for (const std::string& name : remove_stale_temporaries(dir)) {
    spdlog::warn("removed {}, left half-written by a run that was killed", name);
  }
  return lock;
}

}  // namespace attnseg
