#include "attention/bigbird.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace attnseg {

void BigBirdOptions::check() const {
  host_.check("bigbird");
  TORCH_CHECK(block_ >= 1, "bigbird: block must be at least 1, got ", block_);
  TORCH_CHECK(global_blocks_ >= 0, "bigbird: global_blocks must not be negative, got ", global_blocks_);
  TORCH_CHECK(random_blocks_ >= 0, "bigbird: random_blocks must not be negative, got ", random_blocks_);
}

BigBirdImpl::BigBirdImpl(const BigBirdOptions& options_) : options(options_) { reset(); }

void BigBirdImpl::reset() {
  options.check();
  reset_host(options.host());
}

BigBirdLayout BigBirdImpl::layout(int64_t height, int64_t width, uint64_t seed) const {
  const int64_t s = options.block();
  BigBirdLayout layout;
  layout.rows = (height + s - 1) / s;
  layout.cols = (width + s - 1) / s;
  const int64_t blocks = layout.count();
  layout.pixels = cell_pixels(height, width, s);
  layout.global = global_blocks(blocks);
  std::mt19937_64 random(seed);
  layout.window.resize(blocks);
  layout.random.resize(blocks);
  for (int64_t by = 0; by < layout.rows; ++by) {
    for (int64_t bx = 0; bx < layout.cols; ++bx) {
      const int64_t id = by * layout.cols + bx;
      std::vector<bool> taken(blocks, false);
      for (const int64_t global : layout.global) taken[global] = true;
      for (int64_t y = std::max<int64_t>(by - 1, 0); y <= std::min(by + 1, layout.rows - 1); ++y) {
        for (int64_t x = std::max<int64_t>(bx - 1, 0); x <= std::min(bx + 1, layout.cols - 1); ++x) {
          const int64_t neighbour = y * layout.cols + x;
          if (!taken[neighbour]) layout.window[id].push_back(neighbour);
          taken[neighbour] = true;
        }
      }
      std::vector<int64_t> free;
      for (int64_t other = 0; other < blocks; ++other) {
        if (!taken[other]) free.push_back(other);
      }
      std::shuffle(free.begin(), free.end(), random);
      free.resize(std::min<int64_t>(options.random_blocks(), static_cast<int64_t>(free.size())));
      std::sort(free.begin(), free.end());
      layout.random[id] = free;
    }
  }
  return layout;
}

BigBirdLayout BigBirdImpl::layout(int64_t height, int64_t width) const {
  return layout(height, width, static_cast<uint64_t>(height) * 1000003u + static_cast<uint64_t>(width));
}

Pattern BigBirdImpl::pattern_of(const BigBirdLayout& layout, int64_t n) const {
  const int64_t area = options.block() * options.block();
  const int64_t slots = (9 + static_cast<int64_t>(layout.global.size()) + options.random_blocks()) * area;
  at::Tensor rows = at::full({n, slots}, -1, at::kLong);
  auto row = rows.accessor<int64_t, 2>();
  for (int64_t id = 0; id < layout.count(); ++id) {
    std::vector<int64_t> keys;
    for (const auto* kind : {&layout.window[id], &layout.global, &layout.random[id]}) {
      for (const int64_t block : *kind) keys.insert(keys.end(), layout.pixels[block].begin(), layout.pixels[block].end());
    }
    for (const int64_t query : layout.pixels[id]) {
      for (size_t p = 0; p < keys.size(); ++p) row[query][static_cast<int64_t>(p)] = keys[p];
    }
  }
  return pattern_from_rows(rows);
}

Pattern BigBirdImpl::build_pattern(int64_t height, int64_t width) const {
  return pattern_of(layout(height, width), height * width);
}

std::vector<int64_t> BigBirdImpl::global_blocks(int64_t blocks) const {
  const int64_t g = std::min(options.global_blocks(), blocks);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < g; ++i) ids.push_back(g == 1 ? 0 : i * (blocks - 1) / (g - 1));
  return ids;
}

std::vector<int64_t> BigBirdImpl::global_pixels(int64_t height, int64_t width) const {
  const auto cells = cell_pixels(height, width, options.block());
  std::vector<int64_t> pixels;
  for (const int64_t block : global_blocks(static_cast<int64_t>(cells.size()))) {
    pixels.insert(pixels.end(), cells[block].begin(), cells[block].end());
  }
  std::sort(pixels.begin(), pixels.end());
  return pixels;
}

std::vector<int64_t> BigBirdImpl::declared_support(int64_t height, int64_t width, int64_t query) const {
  const std::vector<int64_t> globals = global_pixels(height, width);
  if (!std::binary_search(globals.begin(), globals.end(), query)) {
    return PatternedBlockImpl::declared_support(height, width, query);
  }
  return every_pixel(height, width);
}

at::Tensor BigBirdImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const TokenGrid& grid) {
  at::Tensor out;
  if (is_training()) {
    // Fresh random blocks from LibTorch's generator.
    const BigBirdLayout blocks =
        layout(grid.height, grid.width, static_cast<uint64_t>(at::randint(1LL << 62, {1}, at::kLong).item<int64_t>()));
    out = attend_tiles(q, k, v,
                       {tile_pattern(pattern_of(blocks, q.size(2)), tile_of(grid.height, grid.width, 0)).to(q.device())});
  } else {
    out = attend_pattern(q, k, v, grid.height, grid.width);
  }
  const std::vector<int64_t> globals = global_pixels(grid.height, grid.width);
  if (globals.empty()) return out;
  const at::Tensor at_globals = at::tensor(globals, at::TensorOptions(at::kLong).device(q.device()));
  const at::Tensor gq = q.index_select(2, at_globals) * (1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const at::Tensor rows = at::matmul(at::softmax(at::matmul(gq, k.transpose(-1, -2)), -1).to(v.scalar_type()), v);
  return out.index_copy(2, at_globals, rows.to(out.scalar_type()));
}

int64_t BigBirdImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const int64_t g = static_cast<int64_t>(global_pixels(height, width).size());
  return PatternedBlockImpl::core_macs_on(b, height, width) +
         2 * b * options.host().heads() * g * height * width * options.host().head_width();
}

}  // namespace attnseg
