#include "attention/jukebox.h"

#include <ATen/ATen.h>

namespace attnseg {

void JukeboxOptions::check() const {
  host_.check("jukebox");
  TORCH_CHECK(host_.heads() >= 3, "jukebox: heads must be at least 3 (row, column, previous row), got ",
              host_.heads());
}

JukeboxImpl::JukeboxImpl(const JukeboxOptions& options_) : options(options_) { reset(); }

void JukeboxImpl::reset() {
  options.check();
  reset_host(options.host());
}

Pattern JukeboxImpl::mask_pattern(int64_t height, int64_t width, JukeboxMask mask) {
  const at::Tensor pixel = at::arange(height * width, at::kLong).unsqueeze(1);  // [N, 1]
  const at::Tensor y = pixel.div(width, "floor"), x = pixel.remainder(width);
  if (mask == JukeboxMask::row) return pattern_from_rows(y * width + at::arange(width, at::kLong));
  if (mask == JukeboxMask::column) return pattern_from_rows(x + width * at::arange(height, at::kLong));
  const at::Tensor above = (y - 1) * width + at::arange(width, at::kLong);
  return pattern_from_rows(at::where(y >= 1, above, at::full_like(above, -1)));
}

Pattern JukeboxImpl::build_pattern(int64_t height, int64_t width) const {
  std::vector<Pattern> heads;
  for (int64_t head = 0; head < options.host().heads(); ++head) {
    heads.push_back(mask_pattern(height, width, mask_of_head(head)));
  }
  return stack_groups(heads);
}

at::Tensor JukeboxImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const TokenGrid& grid) {
  return attend_pattern(q, k, v, grid.height, grid.width);
}

}  // namespace attnseg
