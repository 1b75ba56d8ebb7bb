#include "engine/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

namespace attnseg {
namespace {

constexpr int64_t kLogEveryPercent = 5;
constexpr int kBarWidth = 24;

std::string clock_text(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void log_progress_line(const std::string& line) {
  std::shared_ptr<spdlog::logger> logger = spdlog::get("attnseg.progress");
  if (!logger) logger = spdlog::default_logger();
  logger->info(line);
}

Progress::Progress(int64_t total, int64_t start, bool show, std::string noun, JobProgress* job)
    : total_(total), start_(start), last_done_(start), show_(show), tty_(::isatty(STDERR_FILENO) == 1),
      noun_(std::move(noun)), job_(job), begin_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& fields) {
  if (job_ != nullptr) job_->done += done - last_done_;
  last_done_ = done;
  if (!show_) return;
  const double rate = done > start_ ? (done - start_) / seconds_since(begin_) : 0.0;
  std::string eta = rate > 0 ? clock_text((total_ - done) / rate) : "?";
  std::string part = fields.empty() ? "" : " " + fields;
  std::string prefix;
  if (job_ != nullptr) {
    const double job_rate = job_->done > 0 ? job_->done / seconds_since(job_->begin) : 0.0;
    eta += ", " + job_->name + " " + (job_rate > 0 ? clock_text((job_->total - job_->done) / job_rate) : "?");
    prefix = job_->part + " ";
  }
  const int64_t percent = total_ > 0 ? done * 100 / total_ : 100;
  if (tty_) {
    const int filled = static_cast<int>(kBarWidth * done / std::max<int64_t>(1, total_));
    std::fprintf(stderr, "\r%s[%s%s] %lld/%lld%s eta %s\033[K", prefix.c_str(), std::string(filled, '#').c_str(),
                 std::string(kBarWidth - filled, '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), part.c_str(), eta.c_str());
    std::fflush(stderr);
  } else if (percent / kLogEveryPercent != last_logged_percent_ / kLogEveryPercent || done == total_) {
    last_logged_percent_ = percent;
    log_progress_line(fmt::format("{}{} {}/{} ({}%){} eta {}", prefix, noun_, done, total_, percent, part, eta));
  }
}

void Progress::finish() {
  if (show_ && tty_) std::fprintf(stderr, "\n");
}

}  // namespace attnseg
