// The fused criss-cross attention's arithmetic, one function per GPU thread. The CUDA kernels
// (criss_cross_cuda.cu) call these on the device, one thread per index; the host runs the very
// same functions over every index (criss_cross_fused.cpp), so the CPU tests check the kernels'
// arithmetic against the unfused LibTorch path (functional::criss_cross_attention).
//
// Layouts, all contiguous: features [b, ch, h, w]; weights [b, h + w, h, w], slot j of pixel
// (y, x) being column pixel (j, x) for j < h and row pixel (y, j − h) for j ≥ h. The centre lies
// on both its row and its column and is counted once, in the row: its column slot (j = y) holds
// weight 0 and is never read. Weights are in the accumulation type (float for half, bfloat16
// and float inputs; double for double), so the [b, h + w, h, w] tensor is materialised once, by
// the forward, and read back by the backward.
//
// Energies e_j = Σ_c q[c, y, x] · k[c, slot pixel], no scale (as CCNet); weights softmax(e) over
// the h + w − 1 slots; output[c, y, x] = Σ_j weight_j · v[c, slot pixel].
#pragma once

#include <math.h>

#include <cstdint>

#include "attention/kernel_support.h"

namespace attnseg::criss_cross {

struct Map {
  int64_t batch, h, w;
};

// The map of a [b, ch, h, w] tensor (host code: the kernels' callers).
template <typename Tensor>
Map map_of(const Tensor& t) {
  return Map{t.size(0), t.size(2), t.size(3)};
}

// The types the kernels' callers dispatch over: float, double, half and bfloat16 (the callers
// include ATen/Dispatch.h).
#define ATTNSEG_CC_DISPATCH(tensor, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, (tensor).scalar_type(), "criss_cross_fused", __VA_ARGS__)

ATTNSEG_HOST_DEVICE inline float exponential(float x) { return expf(x); }
ATTNSEG_HOST_DEVICE inline double exponential(double x) { return exp(x); }

// The pixel (within one channel plane) that slot j of pixel (y, x) reads.
ATTNSEG_HOST_DEVICE inline int64_t slot_pixel(const Map& m, int64_t j, int64_t y, int64_t x) {
  return j < m.h ? j * m.w + x : y * m.w + (j - m.h);
}

// Thread `pixel` of b·h·w: the softmax over the criss-cross of a[:, y, x] · b[:, slot pixel]
// (ch channels), written to weights[batch, :, y, x]. Online max and sum, then one pass that
// normalises: the energies go to the weights and are read back by the same thread.
template <typename acc_t, typename scalar_t>
ATTNSEG_HOST_DEVICE void softmax_of_dots(int64_t pixel, const scalar_t* a, const scalar_t* b, int64_t ch, Map m,
                                         acc_t* weights) {
  const int64_t hw = m.h * m.w, n = pixel / hw, yx = pixel % hw, y = yx / m.w, x = yx % m.w;
  const scalar_t* pa = a + n * ch * hw + yx;
  const scalar_t* pb = b + n * ch * hw;
  acc_t* out = weights + n * (m.h + m.w) * hw + yx;
  acc_t top = 0, sum = 0;
  bool first = true;
  for (int64_t j = 0; j < m.h + m.w; ++j) {
    if (j == y) continue;  // the centre's column slot
    const int64_t p = slot_pixel(m, j, y, x);
    acc_t e = 0;
    for (int64_t c = 0; c < ch; ++c) e += static_cast<acc_t>(pa[c * hw]) * static_cast<acc_t>(pb[c * hw + p]);
    out[j * hw] = e;
    if (first) {
      top = e, sum = 1, first = false;
    } else if (e > top) {
      sum = sum * exponential(top - e) + 1, top = e;
    } else {
      sum += exponential(e - top);
    }
  }
  for (int64_t j = 0; j < m.h + m.w; ++j) out[j * hw] = j == y ? acc_t(0) : exponential(out[j * hw] - top) / sum;
}

// Thread `pixel` of the backward of softmax_of_dots, given the gradient g of the output and the
// values v (ch channels): dweight_j = Σ_c g[c, y, x] · v[c, slot pixel], and the energies'
// gradient weight_j · (dweight_j − Σ_i weight_i · dweight_i), written to grad[batch, :, y, x].
template <typename acc_t, typename scalar_t>
ATTNSEG_HOST_DEVICE void softmax_backward_of_dots(int64_t pixel, const scalar_t* g, const scalar_t* v, int64_t ch,
                                                  Map m, const acc_t* weights, acc_t* grad) {
  const int64_t hw = m.h * m.w, n = pixel / hw, yx = pixel % hw, y = yx / m.w, x = yx % m.w;
  const scalar_t* pg = g + n * ch * hw + yx;
  const scalar_t* pv = v + n * ch * hw;
  const acc_t* a = weights + n * (m.h + m.w) * hw + yx;
  acc_t* out = grad + n * (m.h + m.w) * hw + yx;
  acc_t inner = 0;
  for (int64_t j = 0; j < m.h + m.w; ++j) {
    if (j == y) continue;
    const int64_t p = slot_pixel(m, j, y, x);
    acc_t d = 0;
    for (int64_t c = 0; c < ch; ++c) d += static_cast<acc_t>(pg[c * hw]) * static_cast<acc_t>(pv[c * hw + p]);
    out[j * hw] = d;
    inner += a[j * hw] * d;
  }
  for (int64_t j = 0; j < m.h + m.w; ++j) out[j * hw] = j == y ? acc_t(0) : a[j * hw] * (out[j * hw] - inner);
}

// Thread `index` of b·ch·h·w: out[batch, c, y, x] = Σ_j weights[batch, j, y, x] · src[batch, c, slot pixel].
// The forward's aggregation (src = v) and the query gradient (weights = the energies' gradient, src = k).
template <typename acc_t, typename scalar_t, typename out_t>
ATTNSEG_HOST_DEVICE void aggregate(int64_t index, const acc_t* weights, const scalar_t* src, int64_t ch, Map m,
                                   out_t* out) {
  const int64_t hw = m.h * m.w, n = index / (ch * hw), yx = index % hw, y = yx / m.w, x = yx % m.w;
  const scalar_t* plane = src + (index - yx);  // src[batch, c, :, :]
  const acc_t* a = weights + n * (m.h + m.w) * hw + yx;
  acc_t sum = 0;
  for (int64_t j = 0; j < m.h; ++j) {
    if (j != y) sum += a[j * hw] * static_cast<acc_t>(plane[j * m.w + x]);
  }
  for (int64_t j = 0; j < m.w; ++j) sum += a[(m.h + j) * hw] * static_cast<acc_t>(plane[y * m.w + j]);
  out[index] = static_cast<out_t>(sum);
}

// Thread `index` of b·ch·h·w, the transpose of `aggregate`: what pixel (y, x) of src's channel c
// receives from every pixel whose criss-cross reads it. Its row reads it through slot h + x,
// its column (other rows) through slot y: out[batch, c, y, x] = Σ_x' weights[batch, h + x, y, x'] ·
// src[batch, c, y, x'] + Σ_{y' ≠ y} weights[batch, y, y', x] · src[batch, c, y', x]. The value
// gradient (weights, src = the output's gradient) and the key gradient (the energies'
// gradient, src = q), as gathers: no atomics.
template <typename acc_t, typename scalar_t, typename out_t>
ATTNSEG_HOST_DEVICE void aggregate_transposed(int64_t index, const acc_t* weights, const scalar_t* src, int64_t ch,
                                              Map m, out_t* out) {
  const int64_t hw = m.h * m.w, n = index / (ch * hw), yx = index % hw, y = yx / m.w, x = yx % m.w;
  const scalar_t* plane = src + (index - yx);
  const acc_t* a = weights + n * (m.h + m.w) * hw;
  acc_t sum = 0;
  for (int64_t j = 0; j < m.w; ++j) sum += a[(m.h + x) * hw + y * m.w + j] * static_cast<acc_t>(plane[y * m.w + j]);
  for (int64_t j = 0; j < m.h; ++j) {
    if (j != y) sum += a[y * hw + j * m.w + x] * static_cast<acc_t>(plane[j * m.w + x]);
  }
  out[index] = static_cast<out_t>(sum);
}

}  // namespace attnseg::criss_cross
