// The label value that marks pixels without a class (borders, void, unlabelled): skipped by
// the loss and the metrics, as in mmsegmentation.
#pragma once

#include <cstdint>

namespace attnseg {

constexpr int64_t kIgnoreIndex = 255;

}  // namespace attnseg
