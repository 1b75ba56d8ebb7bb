#include "engine/erf.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include "core/error.h"

namespace attnseg {

at::Tensor erf_support(AttentionBlockImpl& block, const at::Tensor& input, int64_t y, int64_t x, double threshold) {
  if (input.dim() != 4 || input.size(0) != 1) throw Error("erf: the input must be [1, C, H, W]");
  const int64_t h = input.size(2), w = input.size(3);
  if (y < 0 || y >= h || x < 0 || x >= w) throw Error("erf: position outside the map");
  c10::AutoGradMode grad_mode(true);
  at::Tensor in = input.detach().clone().set_requires_grad(true);
  const at::Tensor out = block.forward(in);
  const at::Tensor target = out.select(0, 0).select(1, y).select(1, x).sum();
  at::Tensor magnitude = torch::autograd::grad({target}, {in}, {}, /*retain_graph=*/false,
                                               /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!magnitude.defined()) magnitude = at::zeros_like(in);
  magnitude = magnitude.select(0, 0).abs().sum(0).to(at::kDouble).cpu();  // [H, W]
  at::Tensor others = magnitude.clone();
  others[y][x] = 0;
  const double largest = others.max().item<double>();
  at::Tensor support = largest > 0 ? others > threshold * largest : at::zeros({h, w}, at::kBool);
  support[y][x] = true;
  return support;
}

std::vector<std::array<int64_t, 2>> erf_positions(int64_t height, int64_t width) {
  const int64_t cy = height / 2, cx = width / 2, dy = height / 4, dx = width / 4;
  return {{cy, cx}, {cy - dy, cx - dx}, {cy - dy, cx + dx}, {cy + dy, cx - dx}, {cy + dy, cx + dx}};
}

double effective_receptive_field(AttentionBlockImpl& block, const std::vector<at::Tensor>& inputs, double threshold) {
  if (inputs.empty()) throw Error("erf: no input");
  double total = 0;
  int64_t count = 0;
  for (const at::Tensor& input : inputs) {
    const int64_t h = input.size(2), w = input.size(3);
    for (const auto& [y, x] : erf_positions(h, w)) {
      const at::Tensor support = erf_support(block, input, y, x, threshold);
      total += support.sum().item<double>() / static_cast<double>(h * w);
      ++count;
    }
  }
  return total / static_cast<double>(count);
}

}  // namespace attnseg
