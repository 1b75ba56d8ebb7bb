// Progress of a long loop (training iterations, images to segment): a bar redrawn in place on
// a terminal; elsewhere (CI, files) a log line every few percent, so logs stay short and
// readable. A loop that is one part of a longer job (each training run of a sweep) also
// says where the job stands and when the whole of it should end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace attnseg {

// A job made of several loops whose units add up (the sweep's training iterations). Each
// loop's Progress adds what it does to `done`.
struct JobProgress {
  std::string name;   // "sweep"
  std::string part;   // the loop now running: "ccnet seed 0 (3/13)"
  int64_t total = 0;  // units in the whole job that this process runs
  int64_t done = 0;   // of which finished
  std::chrono::steady_clock::time_point begin = std::chrono::steady_clock::now();
};

class Progress {
 public:
  // With show false (a data-parallel rank other than 0) nothing is drawn or logged. `noun`
  // names one unit in the log lines ("iter 40/200"). With `job`, this loop is a part of it:
  // lines name the part and add the job's estimated end.
  Progress(int64_t total, int64_t start, bool show = true, std::string noun = "iter", JobProgress* job = nullptr);
  // `done` items finished; `fields` is appended after the counts ("loss 0.51 lr 1e-3").
  void update(int64_t done, const std::string& fields);
  void finish();

 private:
  int64_t total_, start_;
  int64_t last_logged_percent_ = -1;
  int64_t last_done_;
  bool show_, tty_;
  std::string noun_;
  JobProgress* job_;
  std::chrono::steady_clock::time_point begin_;
};

// The logger progress lines go to: the default logger's sinks under its own level, so that a
// caller that quiets the default logger while a part runs (the sweep) keeps its progress.
void log_progress_line(const std::string& line);

}  // namespace attnseg
