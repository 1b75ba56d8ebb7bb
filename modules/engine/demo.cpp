#include "engine/demo.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <string>

#include "core/error.h"

namespace attnseg {

at::Tensor block_influence(Segmentor& model, const at::Tensor& image, int64_t row, int64_t col) {
  model->eval();
  at::Tensor input;
  {
    torch::NoGradGuard no_grad;
    input = model->head()->block_input(model->backbone()->forward(image).stage4);
  }
  const int64_t h = input.size(2), w = input.size(3);
  if (row < 0 || row >= h || col < 0 || col >= w) {
    throw Error("influence: pixel (" + std::to_string(row) + ", " + std::to_string(col) +
                ") is outside the " + std::to_string(h) + "x" + std::to_string(w) + " feature map");
  }
  input = input.detach().requires_grad_();
  const at::Tensor out = model->head()->block()->forward(input);
  const at::Tensor grad = torch::autograd::grad({out.select(2, row).select(2, col).sum()}, {input},
                                                /*grad_outputs=*/{}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!grad.defined()) return at::zeros({h, w});
  const at::Tensor map = grad.abs().sum(1)[0];
  const double top = map.max().item<double>();
  return top > 0 ? map / top : map;
}

}  // namespace attnseg
