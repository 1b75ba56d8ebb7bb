// Files written atomically: to a temporary name beside the target, flushed to disk, then
// renamed over it, so a crash mid-write never leaves a half file where a whole one was.
#pragma once

#include <opencv2/core.hpp>

#include <filesystem>
#include <string>

namespace attnseg {

// Writes `text` (any bytes) to `path` atomically; throws attnseg::Error naming the file.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);
// Writes `image` (8-bit, BGR or one channel) to `path` as a PNG, atomically.
void write_png_atomically(const std::filesystem::path& path, const cv::Mat& image);
// Moves the finished temporary file `tmp` to `path` (fsync of both and of the directory);
// for writers that produce the temporary file themselves.
void commit_file(const std::filesystem::path& tmp, const std::filesystem::path& path);

}  // namespace attnseg
