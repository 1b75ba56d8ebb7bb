#include "engine/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

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

}  // namespace

Progress::Progress(int64_t total, int64_t start, bool show)
    : total_(total), start_(start), show_(show), tty_(::isatty(STDERR_FILENO) == 1),
      begin_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& fields) {
  if (!show_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
  const double rate = done > start_ ? (done - start_) / elapsed : 0.0;
  const std::string eta = rate > 0 ? clock_text((total_ - done) / rate) : "?";
  const int64_t percent = total_ > 0 ? done * 100 / total_ : 100;
  if (tty_) {
    const int filled = static_cast<int>(kBarWidth * done / std::max<int64_t>(1, total_));
    std::fprintf(stderr, "\r[%s%s] %lld/%lld %s eta %s\033[K", std::string(filled, '#').c_str(),
                 std::string(kBarWidth - filled, '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), fields.c_str(), eta.c_str());
    std::fflush(stderr);
  } else if (percent / kLogEveryPercent != last_logged_percent_ / kLogEveryPercent || done == total_) {
    last_logged_percent_ = percent;
    spdlog::info("iter {}/{} ({}%) {} eta {}", done, total_, percent, fields, eta);
  }
}

void Progress::finish() {
  if (show_ && tty_) std::fprintf(stderr, "\n");
}

}  // namespace attnseg
