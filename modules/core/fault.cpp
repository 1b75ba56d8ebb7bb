#include "core/fault.h"

#include <csignal>
#include <cstdlib>
#include <mutex>
#include <string>

namespace attnseg {

void kill_here_if_asked(const char* point, const std::filesystem::path& file) {
  const char* spec = std::getenv("ATTNSEG_KILL_AT");
  if (spec == nullptr || *spec == '\0') return;
  const std::string s = spec;
  const size_t a = s.find(':'), b = s.rfind(':');
  if (a == std::string::npos || b == a) return;
  if (s.substr(0, a) != point) return;
  if (file.filename().string().find(s.substr(a + 1, b - a - 1)) == std::string::npos) return;
  static std::mutex mutex;
  static long seen = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (++seen == std::atol(s.c_str() + b + 1)) std::raise(SIGKILL);
}

bool disk_full_for(const std::filesystem::path& file) {
  const char* part = std::getenv("ATTNSEG_FULL_DISK");
  return part != nullptr && *part != '\0' && file.filename().string().find(part) != std::string::npos;
}

}  // namespace attnseg
