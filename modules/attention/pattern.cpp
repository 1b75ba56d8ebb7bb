#include "attention/pattern.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <limits>
#include <cmath>
#include <set>

namespace attnseg {

std::vector<int64_t> Pattern::reads(int64_t query, int64_t group) const {
  const at::Tensor row = index.select(0, group).select(0, query).cpu();
  const at::Tensor ok = valid.select(0, group).select(0, query).cpu();
  std::set<int64_t> keys;
  for (int64_t p = 0; p < row.size(0); ++p) {
    if (ok[p].item<bool>()) keys.insert(row[p].item<int64_t>());
  }
  return {keys.begin(), keys.end()};
}

int64_t Pattern::pairs() const { return valid.sum().item<int64_t>(); }

Pattern Pattern::to(c10::Device device) const { return {index.to(device), valid.to(device)}; }

Offsets window_offsets(int64_t radius_y, int64_t radius_x, int64_t dilation) {
  Offsets offsets{{0, 0}};
  for (int64_t dy = -radius_y; dy <= radius_y; ++dy) {
    for (int64_t dx = -radius_x; dx <= radius_x; ++dx) {
      if (dy != 0 || dx != 0) offsets.emplace_back(dy * dilation, dx * dilation);
    }
  }
  return offsets;
}

Pattern offset_pattern(int64_t height, int64_t width, const Offsets& offsets) {
  const int64_t p = static_cast<int64_t>(offsets.size());
  std::vector<int64_t> dy, dx;
  for (const auto& [oy, ox] : offsets) {
    dy.push_back(oy);
    dx.push_back(ox);
  }
  const at::Tensor y = at::arange(height, at::kLong).view({height, 1, 1}) + at::tensor(dy, at::kLong).view({1, 1, p});
  const at::Tensor x = at::arange(width, at::kLong).view({1, width, 1}) + at::tensor(dx, at::kLong).view({1, 1, p});
  const at::Tensor valid = (y >= 0) & (y < height) & (x >= 0) & (x < width);  // [H, W, P]
  const at::Tensor index = (y.clamp(0, height - 1) * width + x.clamp(0, width - 1)).expand({height, width, p});
  return {index.reshape({1, height * width, p}).clone(), valid.reshape({1, height * width, p}).clone()};
}

Pattern pattern_from_rows(const at::Tensor& rows) {
  const at::Tensor valid = rows >= 0;
  return {rows.clamp_min(0).unsqueeze(0).contiguous(), valid.unsqueeze(0).contiguous()};
}

Pattern same_keys(int64_t queries, const at::Tensor& keys) {
  const int64_t p = keys.numel();
  return {keys.to(at::kLong).view({1, 1, p}).expand({1, queries, p}).clone(),
          at::ones({1, queries, p}, at::kBool)};
}

Pattern concat_patterns(const std::vector<Pattern>& parts) {
  TORCH_CHECK(!parts.empty(), "concat_patterns: no parts");
  int64_t groups = 1;
  for (const auto& part : parts) groups = std::max(groups, part.groups());
  std::vector<at::Tensor> index, valid;
  for (const auto& part : parts) {
    TORCH_CHECK(part.groups() == groups || part.groups() == 1, "concat_patterns: group counts differ");
    index.push_back(part.index.expand({groups, part.queries(), part.width()}));
    valid.push_back(part.valid.expand({groups, part.queries(), part.width()}));
  }
  Pattern joined{at::cat(index, 2), at::cat(valid, 2)};
  // A key an earlier slot of the same query already reads is dropped: sort each row's valid
  // keys, mark the repeats, and scatter the marks back to their slots.
  const int64_t none = std::numeric_limits<int64_t>::max();
  const at::Tensor keyed = joined.index.masked_fill(joined.valid.logical_not(), none);
  const auto [sorted, order] = keyed.sort(/*stable=*/true, /*dim=*/2, /*descending=*/false);
  at::Tensor repeat = at::zeros_like(joined.valid);
  const at::Tensor same_as_before = sorted.narrow(2, 1, sorted.size(2) - 1) == sorted.narrow(2, 0, sorted.size(2) - 1);
  repeat.narrow(2, 1, repeat.size(2) - 1).copy_(same_as_before);
  joined.valid = joined.valid & at::zeros_like(repeat).scatter_(2, order, repeat).logical_not();
  return joined;
}

Pattern stack_groups(const std::vector<Pattern>& heads) {
  TORCH_CHECK(!heads.empty(), "stack_groups: no heads");
  int64_t widest = 0;
  for (const auto& head : heads) widest = std::max(widest, head.width());
  std::vector<at::Tensor> index, valid;
  for (const auto& head : heads) {
    TORCH_CHECK(head.groups() == 1 && head.queries() == heads[0].queries(), "stack_groups: heads differ in shape");
    const int64_t pad = widest - head.width();
    index.push_back(at::constant_pad_nd(head.index, {0, pad}, 0));
    valid.push_back(at::constant_pad_nd(head.valid, {0, pad}, 0));
  }
  return {at::cat(index, 0), at::cat(valid, 0)};
}

TiledPattern TiledPattern::to(c10::Device device) const {
  return {members.to(device), keys.to(device), reads.to(device), slot.to(device)};
}

TiledPattern tile_pattern(const Pattern& pattern, const at::Tensor& tile_of) {
  TORCH_CHECK(pattern.groups() == 1, "tile_pattern: one group at a time, got ", pattern.groups());
  const int64_t n = pattern.queries(), p = pattern.width();
  const at::Tensor tiles_cpu = tile_of.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor index_cpu = pattern.index[0].to(at::kCPU).contiguous(), valid_cpu = pattern.valid[0].to(at::kCPU).contiguous();
  const auto tile = tiles_cpu.accessor<int64_t, 1>();
  const auto index = index_cpu.accessor<int64_t, 2>();
  const auto valid = valid_cpu.accessor<bool, 2>();
  TORCH_CHECK(tiles_cpu.numel() == n, "tile_pattern: ", tiles_cpu.numel(), " tiles given for ", n, " queries");
  std::vector<int64_t> ids(tile.data(), tile.data() + n);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const int64_t count = static_cast<int64_t>(ids.size());
  std::vector<std::vector<int64_t>> members(count), unions(count);
  for (int64_t i = 0; i < n; ++i) members[std::lower_bound(ids.begin(), ids.end(), tile[i]) - ids.begin()].push_back(i);
  int64_t q = 0, u = 0;
  for (int64_t t = 0; t < count; ++t) {
    for (const int64_t i : members[t]) {
      for (int64_t s = 0; s < p; ++s) {
        if (valid[i][s]) unions[t].push_back(index[i][s]);
      }
    }
    std::sort(unions[t].begin(), unions[t].end());
    unions[t].erase(std::unique(unions[t].begin(), unions[t].end()), unions[t].end());
    q = std::max<int64_t>(q, static_cast<int64_t>(members[t].size()));
    u = std::max<int64_t>(u, static_cast<int64_t>(unions[t].size()));
  }
  u = std::max<int64_t>(u, 1);
  TiledPattern tiled{at::full({count, q}, -1, at::kLong), at::full({count, u}, -1, at::kLong),
                     at::zeros({count, q, u}, at::kBool), at::empty({n}, at::kLong)};
  auto member = tiled.members.accessor<int64_t, 2>();
  auto key = tiled.keys.accessor<int64_t, 2>();
  auto reads = tiled.reads.accessor<bool, 3>();
  auto slot = tiled.slot.accessor<int64_t, 1>();
  for (int64_t t = 0; t < count; ++t) {
    for (size_t j = 0; j < unions[t].size(); ++j) key[t][static_cast<int64_t>(j)] = unions[t][j];
    for (size_t m = 0; m < members[t].size(); ++m) {
      const int64_t i = members[t][m], place = static_cast<int64_t>(m);
      member[t][place] = i;
      slot[i] = t * q + place;
      for (int64_t s = 0; s < p; ++s) {
        if (!valid[i][s]) continue;
        const auto at = std::lower_bound(unions[t].begin(), unions[t].end(), index[i][s]) - unions[t].begin();
        reads[t][place][at] = true;
      }
    }
  }
  return tiled;
}

at::Tensor rectangle_tiles(int64_t height, int64_t width, int64_t rows, int64_t cols) {
  const at::Tensor y = at::arange(height, at::kLong).div(rows, "floor").unsqueeze(1);
  const at::Tensor x = at::arange(width, at::kLong).div(cols, "floor").unsqueeze(0);
  return (y * ((width + cols - 1) / cols) + x).flatten();
}

Regions map_regions(int64_t height, int64_t width, int64_t rows, int64_t cols) {
  rows = std::min(rows, height);
  cols = std::min(cols, width);
  Regions regions;
  std::vector<int64_t> region_of(height * width);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t y0 = i * height / rows, y1 = (i + 1) * height / rows;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t x0 = j * width / cols, x1 = (j + 1) * width / cols;
      std::vector<int64_t> pixels;
      for (int64_t y = y0; y < y1; ++y) {
        for (int64_t x = x0; x < x1; ++x) {
          pixels.push_back(y * width + x);
          region_of[y * width + x] = regions.count();
        }
      }
      regions.pixels.push_back(std::move(pixels));
      regions.centre.push_back((y0 + y1 - 1) / 2 * width + (x0 + x1 - 1) / 2);
    }
  }
  regions.region_of = at::tensor(region_of, at::kLong);
  return regions;
}

std::vector<int64_t> every_pixel(int64_t height, int64_t width) {
  std::vector<int64_t> all(height * width);
  for (int64_t p = 0; p < height * width; ++p) all[p] = p;
  return all;
}

std::vector<std::vector<int64_t>> cell_pixels(int64_t height, int64_t width, int64_t side) {
  const int64_t rows = (height + side - 1) / side, cols = (width + side - 1) / side;
  std::vector<std::vector<int64_t>> cells(rows * cols);
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) cells[(y / side) * cols + x / side].push_back(y * width + x);
  }
  return cells;
}

namespace functional {
namespace {

// The keys or values the slots of queries [start, start+len) read: [B, h, len, P, d].
at::Tensor gather_slots(const at::Tensor& t, const at::Tensor& index) {
  const int64_t b = t.size(0), h = t.size(1), d = t.size(3);
  const int64_t groups = index.size(0), len = index.size(1), p = index.size(2);
  if (groups == 1) return t.index_select(2, index.reshape({-1})).view({b, h, len, p, d});
  std::vector<at::Tensor> heads;
  for (int64_t g = 0; g < groups; ++g) {
    heads.push_back(t.select(1, g).index_select(1, index.select(0, g).reshape({-1})).view({b, len, p, d}));
  }
  return at::stack(heads, 1);
}

// A query with no valid slot keeps its scores unmasked (so the softmax stays finite) and its
// weights are then zeroed with the rest of the invalid slots.
at::Tensor masked_softmax(const at::Tensor& scores, const at::Tensor& valid) {
  const at::Tensor reads_any = valid.any(-1, /*keepdim=*/true);
  const at::Tensor hide = valid.logical_not() & reads_any;
  const at::Tensor weights = at::softmax(scores.masked_fill(hide, -std::numeric_limits<double>::infinity()), -1);
  return weights * valid.to(weights.scalar_type());
}

}  // namespace

at::Tensor patterned_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const Pattern& pattern, double scale, int64_t chunk) {
  const int64_t n = q.size(2);
  TORCH_CHECK(pattern.queries() == n, "patterned_attention: the pattern has ", pattern.queries(), " queries, q ", n);
  TORCH_CHECK(pattern.groups() == 1 || pattern.groups() == q.size(1), "patterned_attention: ", pattern.groups(),
              " pattern groups for ", q.size(1), " heads");
  std::vector<at::Tensor> outputs;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t len = std::min(chunk, n - start);
    const at::Tensor index = pattern.index.narrow(1, start, len), valid = pattern.valid.narrow(1, start, len);
    const at::Tensor keys = gather_slots(k, index), values = gather_slots(v, index);  // [B, h, len, P, d]
    const at::Tensor scores = at::matmul(q.narrow(2, start, len).unsqueeze(3) * scale, keys.transpose(-1, -2));
    const at::Tensor weights = masked_softmax(scores.squeeze(3), valid.unsqueeze(0));  // [B, h, len, P]
    outputs.push_back(at::matmul(weights.unsqueeze(3).to(values.scalar_type()), values).squeeze(3));
  }
  return outputs.size() == 1 ? outputs[0] : at::cat(outputs, 2);
}

at::Tensor patterned_mix(const at::Tensor& v, const Pattern& pattern, const at::Tensor& weights, int64_t chunk) {
  const int64_t n = pattern.queries();
  std::vector<at::Tensor> outputs;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t len = std::min(chunk, n - start);
    const at::Tensor values = gather_slots(v, pattern.index.narrow(1, start, len));
    const at::Tensor w = (weights.narrow(1, start, len) * pattern.valid.narrow(1, start, len).to(weights.scalar_type()))
                             .unsqueeze(0).unsqueeze(3).to(values.scalar_type());  // [1, G, len, 1, P]
    outputs.push_back(at::matmul(w, values).squeeze(3));
  }
  return outputs.size() == 1 ? outputs[0] : at::cat(outputs, 2);
}

at::Tensor tiled_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TiledPattern& tiles,
                           double scale, int64_t chunk) {
  const int64_t b = q.size(0), h = q.size(1), d = q.size(3), dv = v.size(3);
  const int64_t count = tiles.members.size(0), width = tiles.members.size(1), keys = tiles.keys.size(1);
  std::vector<at::Tensor> outputs;
  for (int64_t start = 0; start < count; start += chunk) {
    const int64_t len = std::min(chunk, count - start);
    const at::Tensor members = tiles.members.narrow(0, start, len).clamp_min(0).reshape({-1});
    const at::Tensor union_keys = tiles.keys.narrow(0, start, len).clamp_min(0).reshape({-1});
    const at::Tensor qt = q.index_select(2, members).view({b, h, len, width, d});
    const at::Tensor kt = k.index_select(2, union_keys).view({b, h, len, keys, d});
    const at::Tensor vt = v.index_select(2, union_keys).view({b, h, len, keys, dv});
    const at::Tensor scores = at::matmul(qt * scale, kt.transpose(-1, -2));  // [B, h, len, Q, U]
    const at::Tensor weights = masked_softmax(scores, tiles.reads.narrow(0, start, len));
    outputs.push_back(at::matmul(weights.to(vt.scalar_type()), vt).view({b, h, len * width, dv}));
  }
  const at::Tensor all = outputs.size() == 1 ? outputs[0] : at::cat(outputs, 2);
  return all.index_select(2, tiles.slot);
}

int64_t tiled_macs(const TiledPattern& tiles, int64_t b, int64_t heads, int64_t d) {
  return 2 * b * heads * tiles.members.size(0) * tiles.members.size(1) * tiles.keys.size(1) * d;
}

int64_t patterned_macs(const Pattern& pattern, int64_t b, int64_t heads, int64_t d) {
  return 2 * b * heads * pattern.queries() * pattern.width() * d;
}

at::Tensor dense_mask(const Pattern& pattern, int64_t keys) {
  const at::Tensor index = pattern.index.masked_fill(pattern.valid.logical_not(), keys);
  at::Tensor mask = at::zeros({pattern.groups(), pattern.queries(), keys + 1}, pattern.valid.options());
  mask.scatter_(2, index, true);
  return mask.narrow(2, 0, keys);
}

at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            double scale) {
  const at::Tensor scores = at::matmul(q * scale, k.transpose(-1, -2));  // [B, h, N, M]
  return at::matmul(masked_softmax(scores, mask.unsqueeze(0)), v);
}

at::Tensor pool_cells(const at::Tensor& tokens, int64_t height, int64_t width, int64_t cell) {
  const int64_t b = tokens.size(0), h = tokens.size(1), d = tokens.size(3);
  const at::Tensor map = tokens.transpose(2, 3).reshape({b * h, d, height, width});
  const at::Tensor pooled = at::avg_pool2d(map, {cell, cell}, {cell, cell}, {0, 0}, /*ceil_mode=*/true,
                                           /*count_include_pad=*/false);
  return pooled.reshape({b, h, d, -1}).transpose(2, 3);
}

at::Tensor region_means(const at::Tensor& tokens, const Regions& regions) {
  const at::Tensor region_of = regions.region_of.to(tokens.device());
  const at::Tensor sums = at::zeros({tokens.size(0), tokens.size(1), regions.count(), tokens.size(3)}, tokens.options())
                              .index_add(2, region_of, tokens);
  std::vector<double> sizes;
  for (const auto& pixels : regions.pixels) sizes.push_back(static_cast<double>(pixels.size()));
  return sums / at::tensor(sizes, at::kDouble).to(tokens.options()).view({1, 1, -1, 1});
}

}  // namespace functional

std::vector<int64_t> PatternedBlockImpl::declared_support(int64_t height, int64_t width, int64_t query) const {
  const Pattern pattern = build_pattern(height, width);
  const auto sources = extra_key_sources(height, width);
  const int64_t n = height * width;
  std::set<int64_t> pixels{query};
  for (int64_t g = 0; g < pattern.groups(); ++g) {
    for (const int64_t key : pattern.reads(query, g)) {
      if (key < n) {
        pixels.insert(key);
      } else {
        const auto& from = sources.at(key - n);
        pixels.insert(from.begin(), from.end());
      }
    }
  }
  return {pixels.begin(), pixels.end()};
}

std::vector<TiledPattern> PatternedBlockImpl::tiled(int64_t height, int64_t width) const {
  const Pattern pattern = build_pattern(height, width);
  std::vector<TiledPattern> tiles;
  for (int64_t g = 0; g < pattern.groups(); ++g) {
    const Pattern group{pattern.index.narrow(0, g, 1), pattern.valid.narrow(0, g, 1)};
    tiles.push_back(tile_pattern(group, tile_of(height, width, g)));
  }
  return tiles;
}

int64_t PatternedBlockImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const std::vector<TiledPattern> tiles = tiled(height, width);
  const int64_t heads = host_options().heads(), d = host_options().head_width();
  int64_t macs = 0;
  for (const auto& group : tiles) macs += functional::tiled_macs(group, b, tiles.size() == 1 ? heads : 1, d);
  return macs;
}

at::Tensor PatternedBlockImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const TokenGrid& grid) {
  if (!grid.pixel_of.defined()) return attend_raster(q, k, v, grid);
  const at::Tensor token_of = at::argsort(grid.pixel_of);  // raster pixel p holds token token_of[p]
  auto raster = [&](const at::Tensor& t, int64_t dim) { return t.defined() ? t.index_select(dim, token_of) : t; };
  TokenGrid raster_grid = grid;
  raster_grid.order = TokenOrder::raster;
  raster_grid.pixel_of = at::Tensor();
  raster_grid.qk_input = raster(grid.qk_input, 1);
  raster_grid.value_input = raster(grid.value_input, 1);
  return attend_raster(raster(q, 2), raster(k, 2), raster(v, 2), raster_grid).index_select(2, grid.pixel_of);
}

const Pattern& PatternedBlockImpl::pattern_for(int64_t height, int64_t width, c10::Device device) {
  if (height != cached_height_ || width != cached_width_ || device != cached_device_ || !cached_.index.defined()) {
    // Built outside inference mode even when an evaluation builds it: a training pass reuses it
    // in autograd, which cannot save inference tensors.
    c10::InferenceMode normal_tensors(false);
    cached_ = build_pattern(height, width).to(device);
    cached_height_ = height;
    cached_width_ = width;
    cached_device_ = device;
  }
  return cached_;
}

at::Tensor PatternedBlockImpl::attend_pattern(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                              int64_t height, int64_t width, const at::Tensor& extra_k,
                                              const at::Tensor& extra_v) {
  if (height != tiled_height_ || width != tiled_width_ || q.device() != tiled_device_ || cached_tiles_.empty()) {
    c10::InferenceMode normal_tensors(false);  // as in pattern_for
    cached_tiles_.clear();
    for (const auto& group : tiled(height, width)) cached_tiles_.push_back(group.to(q.device()));
    tiled_height_ = height;
    tiled_width_ = width;
    tiled_device_ = q.device();
  }
  const at::Tensor keys = extra_k.defined() ? at::cat({k, extra_k.to(k.scalar_type())}, 2) : k;
  const at::Tensor values = extra_v.defined() ? at::cat({v, extra_v.to(v.scalar_type())}, 2) : v;
  return attend_tiles(q, keys, values, cached_tiles_);
}

at::Tensor PatternedBlockImpl::attend_tiles(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const std::vector<TiledPattern>& tiles) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  // About 1024 queries a chunk, whatever the tile size.
  auto per_chunk = [](const TiledPattern& group) {
    return std::max<int64_t>(1, 1024 / std::max<int64_t>(1, group.members.size(1)));
  };
  if (tiles.size() == 1) return functional::tiled_attention(q, k, v, tiles[0], scale, per_chunk(tiles[0]));
  std::vector<at::Tensor> heads;
  for (size_t g = 0; g < tiles.size(); ++g) {
    const int64_t head = static_cast<int64_t>(g);
    heads.push_back(functional::tiled_attention(q.narrow(1, head, 1), k.narrow(1, head, 1), v.narrow(1, head, 1),
                                                tiles[g], scale, per_chunk(tiles[g])));
  }
  return at::cat(heads, 1);
}

}  // namespace attnseg
