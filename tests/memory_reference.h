// memory_compressed's, synthesizer's and product_key's cores written as float64 loops over
// tokens, sharing nothing with the implementation (no tensor products, no convolution, no
// top-k): test_blocks.cpp and test_sequence_memory.cpp compare the cores with them. Tensors are
// [B, h, N, d].
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "sequence_reference.h"

namespace attnseg::test {

// The memory of one head group: window m of s tokens, m < ceil(n_real/s), out channel o =
// bias[g·d + o] + Σ_t Σ_c weight[g·d + o][c][t] x[m·s + t][c], tokens at or past n_real read
// as zero. x [B, G, N, d] with G the heads compressed; → [B, G, ceil(n_real/s), d].
inline at::Tensor compressed_memory_reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                              int64_t s, int64_t n_real) {
  const at::Tensor xd = x.to(at::kDouble), wd = weight.to(at::kDouble), bd = bias.to(at::kDouble);
  const int64_t B = x.size(0), G = x.size(1), D = x.size(3), L = (n_real + s - 1) / s;
  const auto xa = xd.accessor<double, 4>();
  const auto wa = wd.accessor<double, 3>();
  const auto ba = bd.accessor<double, 1>();
  at::Tensor out = at::zeros({B, G, L, D}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t m = 0; m < L; ++m) {
        for (int64_t o = 0; o < D; ++o) {
          double acc = ba[g * D + o];
          for (int64_t t = 0; t < s && m * s + t < n_real; ++t) {
            for (int64_t c = 0; c < D; ++c) acc += wa[g * D + o][c][t] * xa[b][g][m * s + t][c];
          }
          oa[b][g][m][o] = acc;
        }
      }
    }
  }
  return out;
}

// The first `local_heads` heads: softmax attention of token i over the real tokens of its block
// (i / block == j / block, j < n_real); the others: softmax attention over the compressed memory
// of the real tokens' keys and values. Outputs at every query (padded ones included).
inline at::Tensor memory_compressed_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                              const at::Tensor& weight, const at::Tensor& bias, int64_t s,
                                              int64_t block, int64_t local_heads, int64_t n_real) {
  const int64_t heads = q.size(1), memory = heads - local_heads;
  std::vector<at::Tensor> parts;
  if (local_heads > 0) {
    auto same_block = [&](int64_t i, int64_t j) { return i / block == j / block && j < n_real; };
    parts.push_back(softmax_attention_reference(q.narrow(1, 0, local_heads), k.narrow(1, 0, local_heads),
                                                v.narrow(1, 0, local_heads), same_block));
  }
  if (memory > 0) {
    const at::Tensor mk = compressed_memory_reference(k.narrow(1, local_heads, memory), weight, bias, s, n_real);
    const at::Tensor mv = compressed_memory_reference(v.narrow(1, local_heads, memory), weight, bias, s, n_real);
    parts.push_back(softmax_attention_reference(q.narrow(1, local_heads, memory), mk, mv));
  }
  return at::cat(parts, 1);
}

// out_i = Σ_j softmax_j(logits[i][j]) v_j with logits [B or 1, h, N, N].
inline at::Tensor synthesized_reference(const at::Tensor& logits, const at::Tensor& v) {
  const at::Tensor ld = logits.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = v.size(0), H = v.size(1), N = v.size(2), DV = v.size(3);
  const auto la = ld.accessor<double, 4>();
  const auto va = vd.accessor<double, 4>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t lb = logits.size(0) == 1 ? 0 : b;
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        double max = -1e300, z = 0;
        for (int64_t j = 0; j < N; ++j) max = std::max(max, la[lb][h][i][j]);
        std::vector<double> w(N);
        for (int64_t j = 0; j < N; ++j) z += (w[j] = std::exp(la[lb][h][i][j] - max));
        for (int64_t c = 0; c < DV; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < N; ++j) acc += w[j] / z * va[b][h][j][c];
          oa[b][h][i][c] = acc;
        }
      }
    }
  }
  return out;
}

// Dense synthesizer logits, one token at a time: hidden_r = relu(Σ_c x_c w1[c][r] + b1[r]),
// logit_j = Σ_r hidden_r w2[r][j] + b2[j], per head. x [B, h, N, d], w2 [h, r, N], b2 [h, N].
inline at::Tensor dense_synthesizer_logits_reference(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                                                     const at::Tensor& w2, const at::Tensor& b2) {
  const at::Tensor xd = x.to(at::kDouble), w1d = w1.to(at::kDouble), b1d = b1.to(at::kDouble), w2d = w2.to(at::kDouble),
                   b2d = b2.to(at::kDouble);
  const int64_t B = x.size(0), H = x.size(1), N = x.size(2), D = x.size(3), R = w1.size(2), M = w2.size(2);
  const auto xa = xd.accessor<double, 4>();
  const auto w1a = w1d.accessor<double, 3>(), w2a = w2d.accessor<double, 3>();
  const auto b1a = b1d.accessor<double, 2>(), b2a = b2d.accessor<double, 2>();
  at::Tensor out = at::zeros({B, H, N, M}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> hidden(R);
        for (int64_t r = 0; r < R; ++r) {
          double acc = b1a[h][r];
          for (int64_t c = 0; c < D; ++c) acc += xa[b][h][i][c] * w1a[h][c][r];
          hidden[r] = std::max(acc, 0.0);
        }
        for (int64_t j = 0; j < M; ++j) {
          double acc = b2a[h][j];
          for (int64_t r = 0; r < R; ++r) acc += hidden[r] * w2a[h][r][j];
          oa[b][h][i][j] = acc;
        }
      }
    }
  }
  return out;
}

// R = R1 R2ᵀ per head, entry by entry: r1, r2 [h, N, rank] → [1, h, N, N].
inline at::Tensor factorized_logits_reference(const at::Tensor& r1, const at::Tensor& r2) {
  const at::Tensor ad = r1.to(at::kDouble), bd = r2.to(at::kDouble);
  const int64_t H = r1.size(0), N = r1.size(1), R = r1.size(2);
  const auto aa = ad.accessor<double, 3>(), ba = bd.accessor<double, 3>();
  at::Tensor out = at::zeros({1, H, N, N}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t r = 0; r < R; ++r) acc += aa[h][i][r] * ba[h][j][r];
        oa[0][h][i][j] = acc;
      }
    }
  }
  return out;
}

// Brute force over all M = n_keys² product keys: key (i, j) scores q1·k1_i + q2·k2_j (q1, q2 the
// query's halves); the topk best, sorted by score, best first. → (scores, indices i·n_keys + j).
inline std::pair<at::Tensor, at::Tensor> product_key_brute_force(const at::Tensor& q, const at::Tensor& sub_keys,
                                                                 int64_t topk) {
  const at::Tensor qd = q.to(at::kDouble), kd = sub_keys.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), E = q.size(3) / 2, K = sub_keys.size(2);
  const auto qa = qd.accessor<double, 4>();
  const auto ka = kd.accessor<double, 4>();
  at::Tensor scores = at::zeros({B, H, N, topk}, at::kDouble);
  at::Tensor indices = at::zeros({B, H, N, topk}, at::kLong);
  auto sa = scores.accessor<double, 4>();
  auto ia = indices.accessor<int64_t, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t n = 0; n < N; ++n) {
        std::vector<std::pair<double, int64_t>> all;
        for (int64_t i = 0; i < K; ++i) {
          for (int64_t j = 0; j < K; ++j) {
            double s = 0;
            for (int64_t e = 0; e < E; ++e) s += qa[b][h][n][e] * ka[h][0][i][e] + qa[b][h][n][E + e] * ka[h][1][j][e];
            all.emplace_back(s, i * K + j);
          }
        }
        std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
        for (int64_t t = 0; t < topk; ++t) {
          sa[b][h][n][t] = all[t].first;
          ia[b][h][n][t] = all[t].second;
        }
      }
    }
  }
  return {scores, indices};
}

// out = Σ_t softmax_t(scores) values[indices_t], one query at a time.
inline at::Tensor product_key_read_reference(const at::Tensor& scores, const at::Tensor& indices,
                                             const at::Tensor& values) {
  const at::Tensor sd = scores.to(at::kDouble), vd = values.to(at::kDouble);
  const int64_t B = scores.size(0), H = scores.size(1), N = scores.size(2), T = scores.size(3), DV = values.size(1);
  const auto sa = sd.accessor<double, 4>();
  const auto ia = indices.accessor<int64_t, 4>();
  const auto va = vd.accessor<double, 2>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t n = 0; n < N; ++n) {
        double max = -1e300, z = 0;
        for (int64_t t = 0; t < T; ++t) max = std::max(max, sa[b][h][n][t]);
        std::vector<double> w(T);
        for (int64_t t = 0; t < T; ++t) z += (w[t] = std::exp(sa[b][h][n][t] - max));
        for (int64_t c = 0; c < DV; ++c) {
          double acc = 0;
          for (int64_t t = 0; t < T; ++t) acc += w[t] / z * va[ia[b][h][n][t]][c];
          oa[b][h][n][c] = acc;
        }
      }
    }
  }
  return out;
}

}  // namespace attnseg::test
