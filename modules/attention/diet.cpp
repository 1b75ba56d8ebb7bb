#include "attention/diet.h"

#include <algorithm>

namespace attnseg {

void DietOptions::check() const {
  host_.check("diet");
  TORCH_CHECK(radius_ >= 1, "diet: radius must be at least 1, got ", radius_);
  TORCH_CHECK(dilations_.empty() || static_cast<int64_t>(dilations_.size()) == host_.heads(),
              "diet: dilations must list one dilation per head (", host_.heads(), "), got ", dilations_.size());
  for (const int64_t dilation : dilations_) {
    TORCH_CHECK(dilation >= 1, "diet: dilations must be at least 1, got ", dilation);
  }
}

std::vector<int64_t> DietOptions::head_dilations() const {
  if (!dilations_.empty()) return dilations_;
  std::vector<int64_t> dilations;
  for (int64_t head = 0; head < host_.heads(); ++head) dilations.push_back(int64_t{1} << std::min<int64_t>(head, 30));
  return dilations;
}

DietImpl::DietImpl(const DietOptions& options_) : options(options_) { reset(); }

void DietImpl::reset() {
  options.check();
  reset_host(options.host());
}

Pattern DietImpl::build_pattern(int64_t height, int64_t width) const {
  std::vector<Pattern> heads;
  for (const int64_t dilation : options.head_dilations()) {
    heads.push_back(offset_pattern(height, width, window_offsets(options.radius(), options.radius(), dilation)));
  }
  return stack_groups(heads);
}

at::Tensor DietImpl::tile_of(int64_t height, int64_t width, int64_t group) const {
  const int64_t dilation = options.head_dilations()[group];
  const at::Tensor y = at::arange(height, at::kLong).unsqueeze(1), x = at::arange(width, at::kLong).unsqueeze(0);
  // (residue of y, residue of x, tile row, tile column) of each pixel.
  return (((y.remainder(dilation) * dilation + x.remainder(dilation)) * (height + 1) +
           y.div(dilation, "floor").div(4, "floor")) * (width + 1) +
          x.div(dilation, "floor").div(4, "floor"))
      .flatten();
}

at::Tensor DietImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const TokenGrid& grid) {
  return attend_pattern(q, k, v, grid.height, grid.width);
}

}  // namespace attnseg
