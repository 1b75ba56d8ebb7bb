// One run per work directory: an advisory lock (flock) on `<dir>/.attnseg.lock`, held for the
// lock object's life. The kernel drops the lock when its process dies, however it dies, so a
// lock file left by a killed run is taken over by the next one (and said so); a directory that
// a live run holds is refused in one line naming that run's pid and start time.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

namespace attnseg {

class WorkDirLock {
 public:
  // Creates `dir` if needed and takes its lock; throws attnseg::Error when another process
  // holds it. `command` is recorded for the message a second run gets.
  WorkDirLock(const std::filesystem::path& dir, const std::string& command);
  ~WorkDirLock();
  WorkDirLock(const WorkDirLock&) = delete;
  WorkDirLock& operator=(const WorkDirLock&) = delete;

  // "pid 123 (train, started 2026-11-30 19:45:17)" of the dead run whose lock was taken
  // over; empty when the lock was free.
  const std::string& taken_over() const { return taken_over_; }

  static constexpr const char* kFileName = ".attnseg.lock";

 private:
  int fd_ = -1;
  std::string taken_over_;
};

// Takes `dir`'s lock for a run of `command`, says when it took over a dead run's lock, and
// removes the temporary files such runs left half-written (nothing else writes there now).
std::unique_ptr<WorkDirLock> claim_work_dir(const std::filesystem::path& dir, const std::string& command);

}  // namespace attnseg
