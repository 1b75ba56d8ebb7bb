#include "attention/functional.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "attention/criss_cross_fused.h"
#include "core/error.h"
#include "core/torch_compat.h"

namespace attnseg::functional {
namespace {

void check_qkv(const char* name, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, name,
              ": q, k and v must be [B, C, H, W], got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(q.sizes() == k.sizes(), name, ": q and k must have the same shape, got ", q.sizes(),
              " and ", k.sizes());
  TORCH_CHECK(q.size(0) == v.size(0) && q.size(2) == v.size(2) && q.size(3) == v.size(3), name,
              ": v must share batch and spatial size with q, got ", v.sizes(), " and ", q.sizes());
}

}  // namespace

at::Tensor nonlocal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_qkv("nonlocal_attention", q, k, v);
  const auto b = q.size(0), h = q.size(2), w = q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(1)));
  // One head: [B, 1, N, D] queries and keys, [B, 1, N, C] values.
  auto tokens = [](const at::Tensor& x) { return x.flatten(2).transpose(1, 2).unsqueeze(1); };
  const at::Tensor out = compat::dense_attention(tokens(q), tokens(k), tokens(v), scale);  // [B, 1, N, C]
  return out.squeeze(1).transpose(1, 2).reshape({b, v.size(1), h, w});
}

at::Tensor criss_cross_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_qkv("criss_cross_attention", q, k, v);
  const int64_t b = q.size(0), d = q.size(1), h = q.size(2), w = q.size(3), c = v.size(1);
  // Columns and rows as batches of sequences, so that every product is one bmm (as einsum
  // over the same operands chose layouts that took 59 ms against these 51 at [1, 512, 64, 128]).
  const at::Tensor q_col = q.permute({0, 3, 2, 1}).reshape({b * w, h, d});
  const at::Tensor k_col = k.permute({0, 3, 1, 2}).reshape({b * w, d, h});
  const at::Tensor q_row = q.permute({0, 2, 3, 1}).reshape({b * h, w, d});
  const at::Tensor k_row = k.permute({0, 2, 1, 3}).reshape({b * h, d, w});
  // Column energies e_h[b, y, x, y'] and row energies e_w[b, y, x, x'].
  at::Tensor e_h = at::bmm(q_col, k_col).view({b, w, h, h}).permute({0, 2, 1, 3});
  const at::Tensor e_w = at::bmm(q_row, k_row).view({b, h, w, w});
  // The centre pixel lies on both its row and its column; count it once (in the row).
  const at::Tensor diagonal = at::eye(h, q.options().dtype(at::kBool)).view({1, h, 1, h});
  e_h = e_h.masked_fill(diagonal, -std::numeric_limits<double>::infinity());
  const at::Tensor attn = at::softmax(at::cat({e_h, e_w}, -1), -1);
  const at::Tensor a_col = attn.narrow(-1, 0, h).permute({0, 2, 1, 3}).reshape({b * w, h, h});
  const at::Tensor a_row = attn.narrow(-1, h, w).reshape({b * h, w, w});
  const at::Tensor v_col = v.permute({0, 3, 1, 2}).reshape({b * w, c, h});
  const at::Tensor v_row = v.permute({0, 2, 1, 3}).reshape({b * h, c, w});
  const at::Tensor out_col = at::bmm(v_col, a_col.transpose(1, 2)).view({b, w, c, h}).permute({0, 2, 3, 1});
  const at::Tensor out_row = at::bmm(v_row, a_row.transpose(1, 2)).view({b, h, c, w}).permute({0, 2, 1, 3});
  return out_col + out_row;
}

at::Tensor criss_cross_attention_fused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_qkv("criss_cross_attention_fused", q, k, v);
  return criss_cross::fused_attention(q, k, v);
}

}  // namespace attnseg::functional
