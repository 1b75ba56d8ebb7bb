#include "core/atomic_file.h"

#include <fcntl.h>
#include <opencv2/imgcodecs.hpp>
#include <unistd.h>

#include <fstream>
#include <vector>

#include "core/error.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void commit_file(const fs::path& tmp, const fs::path& path) {
  fsync_path(tmp, O_RDONLY);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error("cannot move " + tmp.string() + " to " + path.string() + ": " + ec.message());
  fsync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path(), O_RDONLY | O_DIRECTORY);
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw Error("cannot write " + tmp.string());
  }
  commit_file(tmp, path);
}

void write_png_atomically(const fs::path& path, const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes)) throw Error("cannot encode " + path.string() + " as PNG");
  write_text_atomically(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace attnseg
