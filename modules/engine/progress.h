// Training progress: a bar redrawn in place on a terminal; elsewhere (CI, files) a log line
// every few percent, so logs stay short and readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace attnseg {

class Progress {
 public:
  // With show false (a data-parallel rank other than 0) nothing is drawn or logged.
  Progress(int64_t total, int64_t start, bool show = true);
  // `done` items finished; `fields` is appended after the counts ("loss 0.51 lr 1e-3").
  void update(int64_t done, const std::string& fields);
  void finish();

 private:
  int64_t total_, start_;
  int64_t last_logged_percent_ = -1;
  bool show_, tty_;
  std::chrono::steady_clock::time_point begin_;
};

}  // namespace attnseg
