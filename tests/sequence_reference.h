// The sequence blocks' cores written as float64 loops over tokens, sharing nothing with the
// implementation: the block harness (test_blocks.cpp) and test_sequence_blocks.cpp compare the
// cores with them. Tensors are [B, h, N, d].
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attention/pattern.h"

namespace attnseg::test {

// out_i = Σ_j softmax_j(q_i·k_j/√d) v_j over the keys j where `allowed(i, j)`.
template <typename Allowed>
at::Tensor softmax_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       Allowed allowed) {
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), M = k.size(2), D = q.size(3), DV = v.size(3);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  std::vector<double> w(M);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        double max = -1e300, z = 0;
        for (int64_t j = 0; j < M; ++j) {
          double e = 0;
          for (int64_t d = 0; d < D; ++d) e += qa[b][h][i][d] * ka[b][h][j][d];
          w[j] = e / std::sqrt(static_cast<double>(D));
          if (allowed(i, j)) max = std::max(max, w[j]);
        }
        for (int64_t j = 0; j < M; ++j) z += (w[j] = allowed(i, j) ? std::exp(w[j] - max) : 0.0);
        for (int64_t c = 0; c < DV; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < M; ++j) acc += w[j] / z * va[b][h][j][c];
          oa[b][h][i][c] = acc;
        }
      }
    }
  }
  return out;
}

inline at::Tensor softmax_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return softmax_attention_reference(q, k, v, [](int64_t, int64_t) { return true; });
}

// Linear attention in its dense order: a_ij = φ(q_i)·φ(k_j), φ(x) = elu(x) + 1, for every pair
// (j ≤ i when causal), out_i = Σ_j a_ij v_j / (Σ_j a_ij + eps).
inline at::Tensor linear_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             bool causal, double eps) {
  auto phi = [](double x) { return x > 0 ? x + 1 : std::exp(x); };
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3), DV = v.size(3);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        double z = 0;
        std::vector<double> acc(DV, 0.0);
        for (int64_t j = 0; j < (causal ? i + 1 : N); ++j) {
          double a = 0;
          for (int64_t d = 0; d < D; ++d) a += phi(qa[b][h][i][d]) * phi(ka[b][h][j][d]);
          z += a;
          for (int64_t c = 0; c < DV; ++c) acc[c] += a * va[b][h][j][c];
        }
        for (int64_t c = 0; c < DV; ++c) oa[b][h][i][c] = acc[c] / (z + eps);
      }
    }
  }
  return out;
}

// FAVOR+ from its definition, feature by feature: x̂ = x·d^−1/4, φ_r(x) = (exp(w_r·x̂ − ‖x̂‖²/2 −
// s) + 1e-4) / √m with s the largest w_r·x̂ of that query (queries) or of all keys of the head
// (keys); a_ij = φ(q_i)·φ(k_j); out_i = Σ_j a_ij v_j / Σ_j a_ij.
inline at::Tensor performer_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& projection) {
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble),
                   wd = projection.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3), DV = v.size(3), M = wd.size(0);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  const auto wa = wd.accessor<double, 2>();
  const double scale = std::pow(static_cast<double>(D), -0.25);
  // dash[n][r] = w_r·x̂_n and half the squared norm of x̂_n, for the tokens of one head.
  auto project = [&](const auto& xa, int64_t b, int64_t h, std::vector<std::vector<double>>& dash,
                     std::vector<double>& half_norm) {
    dash.assign(N, std::vector<double>(M, 0.0));
    half_norm.assign(N, 0.0);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t d = 0; d < D; ++d) half_norm[n] += std::pow(xa[b][h][n][d] * scale, 2) / 2;
      for (int64_t r = 0; r < M; ++r) {
        for (int64_t d = 0; d < D; ++d) dash[n][r] += wa[r][d] * xa[b][h][n][d] * scale;
      }
    }
  };
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  std::vector<std::vector<double>> qdash, kdash;
  std::vector<double> qhalf, khalf;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      project(qa, b, h, qdash, qhalf);
      project(ka, b, h, kdash, khalf);
      double key_max = -1e300;
      for (const auto& row : kdash) key_max = std::max(key_max, *std::max_element(row.begin(), row.end()));
      std::vector<std::vector<double>> fk(N, std::vector<double>(M));
      for (int64_t j = 0; j < N; ++j) {
        for (int64_t r = 0; r < M; ++r) fk[j][r] = (std::exp(kdash[j][r] - khalf[j] - key_max) + 1e-4) / std::sqrt(M);
      }
      for (int64_t i = 0; i < N; ++i) {
        const double query_max = *std::max_element(qdash[i].begin(), qdash[i].end());
        std::vector<double> fq(M);
        for (int64_t r = 0; r < M; ++r) fq[r] = (std::exp(qdash[i][r] - qhalf[i] - query_max) + 1e-4) / std::sqrt(M);
        double z = 0;
        std::vector<double> acc(DV, 0.0);
        for (int64_t j = 0; j < N; ++j) {
          double a = 0;
          for (int64_t r = 0; r < M; ++r) a += fq[r] * fk[j][r];
          z += a;
          for (int64_t c = 0; c < DV; ++c) acc[c] += a * va[b][h][j][c];
        }
        for (int64_t c = 0; c < DV; ++c) oa[b][h][i][c] = acc[c] / z;
      }
    }
  }
  return out;
}

// Linformer: projected keys K'_r = Σ_n e_rn k_n and values V'_r = Σ_n f_rn v_n, then softmax
// attention of every query over the k projected tokens. e, f: [k, N].
inline at::Tensor linformer_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& e, const at::Tensor& f) {
  const at::Tensor kd = k.to(at::kDouble), vd = v.to(at::kDouble), ed = e.to(at::kDouble), fd = f.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3), DV = v.size(3), R = e.size(0);
  const auto ka = kd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  const auto ea = ed.accessor<double, 2>(), fa = fd.accessor<double, 2>();
  at::Tensor pk = at::zeros({B, H, R, D}, at::kDouble), pv = at::zeros({B, H, R, DV}, at::kDouble);
  auto pka = pk.accessor<double, 4>(), pva = pv.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t d = 0; d < D; ++d) pka[b][h][r][d] += ea[r][n] * ka[b][h][n][d];
          for (int64_t c = 0; c < DV; ++c) pva[b][h][r][c] += fa[r][n] * va[b][h][n][c];
        }
      }
    }
  }
  return softmax_attention_reference(q, pk, pv);
}

// The patterned blocks' engine written query by query: for each batch, head and query, a
// softmax over exactly the keys the pattern says it reads (each once), in float64; a query
// that reads nothing gets 0. `weights` [G, N, P] instead of scores: the handcrafted mix.
inline at::Tensor patterned_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const Pattern& pattern, double scale, const at::Tensor& weights = {}) {
  const at::Tensor kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  at::Tensor out = at::zeros({v.size(0), v.size(1), pattern.queries(), v.size(3)}, at::kDouble);
  for (int64_t head = 0; head < v.size(1); ++head) {
    const int64_t g = pattern.groups() == 1 ? 0 : head;
    for (int64_t i = 0; i < pattern.queries(); ++i) {
      const std::vector<int64_t> keys = pattern.reads(i, g);
      if (keys.empty()) continue;
      const at::Tensor at_keys = at::tensor(keys, at::kLong);
      at::Tensor w;
      if (weights.defined()) {
        std::vector<double> row;
        for (const int64_t key : keys) {
          for (int64_t p = 0; p < pattern.width(); ++p) {
            if (pattern.valid[g][i][p].item<bool>() && pattern.index[g][i][p].item<int64_t>() == key) {
              row.push_back(weights[weights.size(0) == 1 ? 0 : head][i][p].item<double>());
              break;
            }
          }
        }
        w = at::tensor(row, at::kDouble).unsqueeze(0).expand({v.size(0), -1});
      } else {
        const at::Tensor qi = q.select(1, head).select(1, i).to(at::kDouble);       // [B, d]
        const at::Tensor ki = kd.select(1, head).index_select(1, at_keys);          // [B, P, d]
        w = at::softmax(at::bmm(ki, qi.unsqueeze(2)).squeeze(2) * scale, 1);        // [B, P]
      }
      out.select(1, head).select(1, i).copy_(at::bmm(w.unsqueeze(1), vd.select(1, head).index_select(1, at_keys)).squeeze(1));
    }
  }
  return out;
}

}  // namespace attnseg::test
