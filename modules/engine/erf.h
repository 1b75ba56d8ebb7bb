// Effective receptive field of an attention block (after Luo et al., arXiv:1701.04128): for an
// output position p, the input positions whose gradient of p's output (summed over channels)
// is non-negligible. The block's residual path makes p's own gradient dwarf every other, so
// the others are compared with the largest among themselves: the support of p is p itself and
// every other position whose gradient magnitude (summed over input channels) exceeds
// `threshold` times the largest at any position other than p. With threshold 0 it is the
// exact support: the positions the output at p depends on at all.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <vector>

#include "attention/block.h"

namespace attnseg {

// Boolean [H, W]: the support of output position (y, x) for the input [1, C, H, W].
at::Tensor erf_support(AttentionBlockImpl& block, const at::Tensor& input, int64_t y, int64_t x, double threshold);

// Five positions about the centre of an H×W map: the centre and the four points half-way
// from it to the corners.
std::vector<std::array<int64_t, 2>> erf_positions(int64_t height, int64_t width);

// The share of the map in the support, averaged over erf_positions and the inputs (each
// [1, C, H, W]); in (0, 1].
double effective_receptive_field(AttentionBlockImpl& block, const std::vector<at::Tensor>& inputs,
                                 double threshold = 0.01);

}  // namespace attnseg
