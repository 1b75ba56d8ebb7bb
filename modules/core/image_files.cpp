#include "core/image_files.h"

#include <ATen/ATen.h>
#include <zlib.h>

#include <cstdint>

#include "core/error.h"

namespace attnseg {
namespace {

void put_u32_be(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// length, type, data, CRC-32 of type and data (PNG specification, section 5.3)
void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const std::string typed = std::string(type, 4) + data;
  out += typed;
  put_u32_be(out, static_cast<uint32_t>(
                      crc32(0L, reinterpret_cast<const Bytef*>(typed.data()), static_cast<uInt>(typed.size()))));
}

}  // namespace

std::string encode_indexed_png(const cv::Mat& labels, const std::vector<cv::Vec3b>& palette) {
  if (labels.type() != CV_8UC1 || labels.empty()) throw Error("indexed PNG: labels must be a non-empty CV_8UC1 map");
  if (palette.empty() || palette.size() > 256) throw Error("indexed PNG: the palette needs 1 to 256 colours");
  double top = 0;
  cv::minMaxLoc(labels, nullptr, &top);
  if (top >= static_cast<double>(palette.size())) {
    throw Error("indexed PNG: label " + std::to_string(static_cast<int>(top)) + " has no palette colour (" +
                std::to_string(palette.size()) + " colours)");
  }
  const auto width = static_cast<uint32_t>(labels.cols), height = static_cast<uint32_t>(labels.rows);
  std::string header;
  put_u32_be(header, width);
  put_u32_be(header, height);
  header += std::string{8, 3, 0, 0, 0};  // bit depth 8, indexed colour, deflate, adaptive filters, no interlace
  std::string colours;
  for (const cv::Vec3b& rgb : palette) colours += std::string{static_cast<char>(rgb[0]), static_cast<char>(rgb[1]),
                                                              static_cast<char>(rgb[2])};
  // Each scanline starts with its filter type: 0, none (label maps deflate well as they are).
  std::string raw;
  raw.reserve(static_cast<size_t>(height) * (width + 1));
  for (int y = 0; y < labels.rows; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(labels.ptr<uint8_t>(y)), width);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), Z_DEFAULT_COMPRESSION) != Z_OK) {
    throw Error("indexed PNG: zlib could not compress the label map");
  }
  packed.resize(packed_size);
  std::string png = "\x89PNG\r\n\x1a\n";
  put_chunk(png, "IHDR", header);
  put_chunk(png, "PLTE", colours);
  put_chunk(png, "IDAT", packed);
  put_chunk(png, "IEND", "");
  return png;
}

std::string encode_npy(const at::Tensor& values) {
  static_assert(sizeof(float) == 4, "float32 expected");
  const uint16_t probe = 1;
  if (*reinterpret_cast<const uint8_t*>(&probe) != 1) throw Error(".npy: only little-endian machines are supported");
  const at::Tensor data = values.to(at::kCPU, at::kFloat).contiguous();
  std::string shape;
  for (int64_t d = 0; d < data.dim(); ++d) shape += std::to_string(data.size(d)) + ", ";
  if (data.dim() > 1) shape.resize(shape.size() - 2);  // "(3, 4)"; a 1-d shape keeps its comma: "(3,)"
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
  // 64 and ended by a newline
  const size_t unpadded = 10 + dict.size() + 1;
  dict += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += std::string{1, 0};
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  out += dict;
  out.append(reinterpret_cast<const char*>(data.data_ptr<float>()), static_cast<size_t>(data.numel()) * sizeof(float));
  return out;
}

}  // namespace attnseg
