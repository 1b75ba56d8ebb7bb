// The one exception type a user sees: its message is a single line that names the file or
// key at fault, printed by the executable as "error: <message>" before a non-zero exit.
#pragma once

#include <stdexcept>
#include <string>

namespace attnseg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A rank that `--nproc` started, ending because rank 0 refused the job: rank 0's error line
// says why, so the executable prints nothing and exits with kDeferredToRankZero, a status the
// launcher does not count as the job's failure (it waits for rank 0's and reports that one).
class RankZeroRefused : public Error {
 public:
  using Error::Error;
};
constexpr int kDeferredToRankZero = 3;

}  // namespace attnseg

namespace attnseg {

// Folds a message onto one line (LibTorch's messages can span several).
inline std::string one_line(std::string message) {
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!message.empty() && message.back() == ' ') message.pop_back();
  return message;
}

}  // namespace attnseg
