// The routing and sinkhorn cores written as float64 loops over tokens and blocks, sharing
// nothing with the implementation (no top-k, gather or Sinkhorn call of LibTorch): test_blocks.cpp
// and test_sequence_routing.cpp compare the cores with them. Tensors are [B, h, N, d].
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace attnseg::test {

// Softmax attention of query `i` over the keys `keys` (with weights `scale_of_key` on keys and
// values), added to out[i]: the piece both references share.
inline void attend_over(const std::vector<double>& qi, const std::vector<std::vector<double>>& keys,
                        const std::vector<std::vector<double>>& values, std::vector<double>& out) {
  const double root = std::sqrt(static_cast<double>(qi.size()));
  std::vector<double> w(keys.size());
  double max = -1e300, z = 0;
  for (size_t j = 0; j < keys.size(); ++j) {
    w[j] = std::inner_product(qi.begin(), qi.end(), keys[j].begin(), 0.0) / root;
    max = std::max(max, w[j]);
  }
  for (auto& x : w) z += (x = std::exp(x - max));
  for (size_t j = 0; j < keys.size(); ++j) {
    for (size_t c = 0; c < out.size(); ++c) out[c] += w[j] / z * values[j][c];
  }
}

inline std::vector<double> row(const at::TensorAccessor<double, 4>& a, int64_t b, int64_t h,
                               int64_t n) {
  std::vector<double> r(a.size(3));
  for (int64_t c = 0; c < a.size(3); ++c) r[c] = a[b][h][n][c];
  return r;
}

// Routing attention: q̂, k̂ unit; for each centroid μ_c [h, k, d] the w queries and the w keys of
// largest q̂·μ_c, k̂·μ_c; each of those queries attends to those keys; a query's output is the
// mean over the windows that hold it, zero when none does.
inline at::Tensor routing_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& centroids, int64_t w) {
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble),
                   md = centroids.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), DV = v.size(3), K = centroids.size(1);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(),
             va = vd.accessor<double, 4>();
  const auto ma = md.accessor<double, 3>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  // The w tokens of largest cosine to centroid c.
  auto window = [&](const at::TensorAccessor<double, 4>& x, int64_t b, int64_t h, int64_t c) {
    std::vector<double> cosine(N);
    for (int64_t n = 0; n < N; ++n) {
      const std::vector<double> xn = row(x, b, h, n);
      double dot = 0, norm = 0;
      for (size_t e = 0; e < xn.size(); ++e) {
        dot += xn[e] * ma[h][c][e];
        norm += xn[e] * xn[e];
      }
      cosine[n] = dot / std::sqrt(norm);
    }
    std::vector<int64_t> order(N);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b2) { return cosine[a] > cosine[b2]; });
    order.resize(w);
    return order;
  };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      std::vector<std::vector<double>> sum(N, std::vector<double>(DV, 0.0));
      std::vector<int64_t> count(N, 0);
      for (int64_t c = 0; c < K; ++c) {
        std::vector<std::vector<double>> keys, values;
        for (const int64_t j : window(ka, b, h, c)) {
          keys.push_back(row(ka, b, h, j));
          values.push_back(row(va, b, h, j));
        }
        for (const int64_t i : window(qa, b, h, c)) {
          attend_over(row(qa, b, h, i), keys, values, sum[i]);
          ++count[i];
        }
      }
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t e = 0; e < DV; ++e) oa[b][h][i][e] = count[i] > 0 ? sum[i][e] / count[i] : 0.0;
      }
    }
  }
  return out;
}

// The Sinkhorn sorting matrix [B, h, nb, nb]: block sums s_i = [Σ q, Σ k] over the real tokens
// of block i, L_ij = (log(max(0, s_i·W[h][:, j]) + 1e-6)) / T, then `iters` rounds of
// normalising each row and then each column in log space; R = exp(L).
inline at::Tensor sinkhorn_matrix_reference(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& weight, const std::vector<bool>& real,
                                            int64_t bucket, int64_t iters, double temperature) {
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), wd = weight.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3), NB = N / bucket;
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>();
  const auto wa = wd.accessor<double, 3>();
  at::Tensor out = at::zeros({B, H, NB, NB}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  auto logsumexp = [](const std::vector<double>& x) {
    const double max = *std::max_element(x.begin(), x.end());
    double z = 0;
    for (const double e : x) z += std::exp(e - max);
    return max + std::log(z);
  };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      std::vector<std::vector<double>> l(NB, std::vector<double>(NB));
      for (int64_t i = 0; i < NB; ++i) {
        std::vector<double> s(2 * D, 0.0);
        for (int64_t t = i * bucket; t < (i + 1) * bucket; ++t) {
          if (!real[t]) continue;
          for (int64_t e = 0; e < D; ++e) {
            s[e] += qa[b][h][t][e];
            s[D + e] += ka[b][h][t][e];
          }
        }
        for (int64_t j = 0; j < NB; ++j) {
          double logit = 0;
          for (int64_t e = 0; e < 2 * D; ++e) logit += s[e] * wa[h][e][j];
          l[i][j] = std::log(std::max(0.0, logit) + 1e-6) / temperature;
        }
      }
      for (int64_t it = 0; it < iters; ++it) {
        for (int64_t i = 0; i < NB; ++i) {
          const double z = logsumexp(l[i]);
          for (int64_t j = 0; j < NB; ++j) l[i][j] -= z;
        }
        for (int64_t j = 0; j < NB; ++j) {
          std::vector<double> column(NB);
          for (int64_t i = 0; i < NB; ++i) column[i] = l[i][j];
          const double z = logsumexp(column);
          for (int64_t i = 0; i < NB; ++i) l[i][j] -= z;
        }
      }
      for (int64_t i = 0; i < NB; ++i) {
        for (int64_t j = 0; j < NB; ++j) oa[b][h][i][j] = std::exp(l[i][j]);
      }
    }
  }
  return out;
}

// Sinkhorn attention: block i pairs with π(i), the first largest entry of row i of the sorting
// matrix; each real or padded query of block i attends to the real keys of block π(i) (keys and
// values times R[i][π(i)]) and of block i. With `soft`: instead of block π(i)'s, the `bucket`
// keys Σ_j R[i][j]·k_{j·bucket+t} (padded tokens as zeros), values alike.
inline at::Tensor sinkhorn_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& weight, const std::vector<bool>& real,
                                     int64_t bucket, int64_t iters, double temperature,
                                     bool soft = false) {
  const at::Tensor r = sinkhorn_matrix_reference(q, k, weight, real, bucket, iters, temperature);
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), DV = v.size(3), NB = N / bucket;
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(),
             va = vd.accessor<double, 4>();
  const auto ra = r.accessor<double, 4>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < NB; ++i) {
        std::vector<std::vector<double>> keys, values;
        if (soft) {
          for (int64_t t = 0; t < bucket; ++t) {
            std::vector<double> key(k.size(3), 0.0), value(DV, 0.0);
            for (int64_t j = 0; j < NB; ++j) {
              if (!real[j * bucket + t]) continue;
              const std::vector<double> kj = row(ka, b, h, j * bucket + t),
                                        vj = row(va, b, h, j * bucket + t);
              for (size_t e = 0; e < key.size(); ++e) key[e] += ra[b][h][i][j] * kj[e];
              for (int64_t e = 0; e < DV; ++e) value[e] += ra[b][h][i][j] * vj[e];
            }
            keys.push_back(key);
            values.push_back(value);
          }
        } else {
          int64_t partner = 0;
          for (int64_t j = 1; j < NB; ++j) {
            if (ra[b][h][i][j] > ra[b][h][i][partner]) partner = j;
          }
          const double scale = ra[b][h][i][partner];
          for (int64_t t = partner * bucket; t < (partner + 1) * bucket; ++t) {
            if (!real[t]) continue;
            std::vector<double> key = row(ka, b, h, t), value = row(va, b, h, t);
            for (auto& e : key) e *= scale;
            for (auto& e : value) e *= scale;
            keys.push_back(key);
            values.push_back(value);
          }
        }
        for (int64_t t = i * bucket; t < (i + 1) * bucket; ++t) {
          if (!real[t]) continue;
          keys.push_back(row(ka, b, h, t));
          values.push_back(row(va, b, h, t));
        }
        for (int64_t t = i * bucket; t < (i + 1) * bucket; ++t) {
          std::vector<double> o(DV, 0.0);
          attend_over(row(qa, b, h, t), keys, values, o);
          for (int64_t e = 0; e < DV; ++e) oa[b][h][t][e] = o[e];
        }
      }
    }
  }
  return out;
}

}  // namespace attnseg::test
