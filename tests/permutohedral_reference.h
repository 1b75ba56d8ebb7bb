// The permutohedral lattice written out as a dense kernel matrix in float64: the reference
// both the block harness (test_blocks.cpp) and test_permutohedral.cpp compare the core with.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

namespace attnseg::test {

// The lattice written out as a dense kernel matrix, A = α W_q B_d⋯B_0 W_kᵀ, sharing nothing
// with the implementation: the elevation as an explicit matrix, each simplex from sorting the
// residuals (its barycentric weights from the sorted differences, and checked to rebuild the
// elevated point), vertices in a std::map of all d+1 coordinates, each direction's blur an
// M×M matrix. Returns A v, or A v / A 1 when `normalize`.
inline at::Tensor permutohedral_reference(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, double sigma, bool normalize) {
  const at::Tensor qd = q.to(at::kDouble).flatten(2), kd = k.to(at::kDouble).flatten(2),
                   vd = v.to(at::kDouble).flatten(2);
  const int64_t B = qd.size(0), d = qd.size(1), d1 = d + 1, nq = qd.size(2), nk = kd.size(2),
                C = vd.size(1);
  at::Tensor embed = at::zeros({d1, d}, at::kDouble);
  for (int64_t j = 1; j <= d; ++j) {
    for (int64_t r = 0; r <= j; ++r)
      embed[r][j - 1] = (r < j ? 1.0 : -double(j)) / std::sqrt(double(j * (j + 1)));
  }
  embed = embed * (std::sqrt(2.0 / 3.0) * double(d1) / sigma);
  at::Tensor out = at::zeros({B, C, nq}, at::kDouble);
  for (int64_t b = 0; b < B; ++b) {
    std::map<std::vector<int64_t>, int64_t> vertices;
    // Each point's (vertex index, weight) pairs.
    auto simplex = [&](const at::Tensor& p) {
      const at::Tensor e = at::matmul(embed, p);
      std::vector<double> el(d1), rem0(d1), y(d1);
      double sum = 0;
      for (int64_t c = 0; c < d1; ++c) {
        el[c] = e[c].item<double>();
        rem0[c] = std::round(el[c] / double(d1)) * double(d1);
        sum += rem0[c] / double(d1);
      }
      std::vector<int64_t> order(d1), rank(d1);
      for (int64_t c = 0; c < d1; ++c) order[c] = c;
      std::sort(order.begin(), order.end(),
                [&](int64_t a, int64_t c) { return el[a] - rem0[a] > el[c] - rem0[c]; });
      for (int64_t i = 0; i < d1; ++i) rank[order[i]] = i + static_cast<int64_t>(sum);
      for (int64_t c = 0; c < d1; ++c) {
        if (rank[c] < 0) rank[c] += d1, rem0[c] += double(d1);
        if (rank[c] > d) rank[c] -= d1, rem0[c] -= double(d1);
        y[c] = (el[c] - rem0[c]) / double(d1);
      }
      std::vector<double> sorted = y;
      std::sort(sorted.begin(), sorted.end());
      std::vector<std::pair<int64_t, double>> result;
      std::vector<double> rebuilt(d1, 0.0);
      for (int64_t t = 0; t < d1; ++t) {
        const double w = t == 0 ? 1.0 + sorted[0] - sorted[d] : sorted[t] - sorted[t - 1];
        std::vector<int64_t> key(d1);
        for (int64_t c = 0; c < d1; ++c)
          key[c] = static_cast<int64_t>(rem0[c]) + (rank[c] <= d - t ? t : t - d1);
        for (int64_t c = 0; c < d1; ++c) rebuilt[c] += w * double(key[c]);
        EXPECT_GE(w, -1e-12);
        const auto it = vertices.emplace(key, static_cast<int64_t>(vertices.size())).first;
        result.emplace_back(it->second, w);
      }
      for (int64_t c = 0; c < d1; ++c)
        EXPECT_NEAR(rebuilt[c], el[c], 1e-9) << "simplex does not contain the point";
      return result;
    };
    std::vector<std::vector<std::pair<int64_t, double>>> ks, qs;
    for (int64_t j = 0; j < nk; ++j) ks.push_back(simplex(kd[b].select(1, j)));
    for (int64_t i = 0; i < nq; ++i) qs.push_back(simplex(qd[b].select(1, i)));
    const int64_t M = static_cast<int64_t>(vertices.size());
    std::vector<std::vector<int64_t>> keys(M);
    for (const auto& [key, index] : vertices) keys[index] = key;
    at::Tensor values =
        at::cat({vd[b].t(), at::ones({nk, 1}, at::kDouble)}, 1);  // homogeneous 1 last
    at::Tensor grid = at::zeros({M, C + 1}, at::kDouble);
    for (int64_t j = 0; j < nk; ++j) {
      for (const auto& [m, w] : ks[j]) grid[m] += w * values[j];
    }
    for (int64_t dir = 0; dir < d1; ++dir) {
      at::Tensor blur = at::eye(M, at::kDouble);
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < M; ++n) {
          bool plus = true, minus = true;
          for (int64_t c = 0; c < d1; ++c) {
            const int64_t step = c == dir ? d : -1;
            plus = plus && keys[n][c] == keys[m][c] + step;
            minus = minus && keys[n][c] == keys[m][c] - step;
          }
          if (plus || minus) blur[m][n] = 0.5;
        }
      }
      grid = at::matmul(blur, grid);
    }
    const double alpha = 1.0 / (1.0 + std::pow(2.0, -double(d)));
    for (int64_t i = 0; i < nq; ++i) {
      at::Tensor acc = at::zeros({C + 1}, at::kDouble);
      for (const auto& [m, w] : qs[i]) acc += alpha * w * grid[m];
      // A query whose simplex the blur never reached gets 0, as in the implementation.
      const bool reached = acc[C].item<double>() > 0;
      out[b].select(1, i).copy_(
          normalize ? (reached ? acc.narrow(0, 0, C) / acc[C] : 0 * acc.narrow(0, 0, C))
                    : acc.narrow(0, 0, C));
    }
  }
  std::vector<int64_t> shape{B, C};
  for (int64_t i = 2; i < q.dim(); ++i) shape.push_back(q.size(i));
  return out.reshape(shape);
}

}  // namespace attnseg::test
