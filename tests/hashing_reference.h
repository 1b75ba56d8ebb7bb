// The hashing blocks' cores (reformer, clustered) written as float64 loops over tokens, from
// the papers' definitions and sharing nothing with the implementation. Tensors are
// [B, h, N, d]; buckets [B, h, rounds, N] and clusters [B, h, N] are given, so the loops check
// the attention a grouping implies, and the grouping is checked on its own.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace attnseg::test {

// LSH attention for given buckets. Round r orders the tokens by (bucket, position); the rounds
// are laid end to end and cut into chunks of `chunk`; a query sees its chunk and the one before
// it (the first chunk the last). Scores q_i·k̂_j/√d with k̂_j = q_j/‖q_j‖; its own token at −1e5,
// padded (key_valid false) and, when causal, later tokens at −1e9. Each round's output and
// logsumexp, then the rounds weighted by softmax over their logsumexps.
inline at::Tensor lsh_attention_reference(const at::Tensor& qk, const at::Tensor& v,
                                          const at::Tensor& buckets, int64_t chunk,
                                          const std::vector<bool>& key_valid, bool causal) {
  const at::Tensor qd = qk.to(at::kDouble), vd = v.to(at::kDouble), bd = buckets.to(at::kLong);
  const int64_t B = qk.size(0), H = qk.size(1), N = qk.size(2), D = qk.size(3), DV = v.size(3),
                R = buckets.size(2);
  const auto qa = qd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  const auto ba = bd.accessor<int64_t, 4>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      std::vector<int64_t> seq;  // token of each sorted slot, rounds end to end
      for (int64_t r = 0; r < R; ++r) {
        std::vector<int64_t> t(N);
        std::iota(t.begin(), t.end(), 0);
        std::stable_sort(t.begin(), t.end(),
                         [&](int64_t x, int64_t y) { return ba[b][h][r][x] < ba[b][h][r][y]; });
        seq.insert(seq.end(), t.begin(), t.end());
      }
      const int64_t slots = R * N, chunks = slots / chunk;
      std::vector<std::vector<double>> round_out(R * N, std::vector<double>(DV));
      std::vector<double> round_lse(R * N);
      for (int64_t s = 0; s < slots; ++s) {
        const int64_t i = seq[s], c = s / chunk, prev = (c + chunks - 1) % chunks;
        std::vector<int64_t> keys;
        for (int64_t x = 0; x < chunk; ++x) keys.push_back(seq[c * chunk + x]);
        for (int64_t x = 0; x < chunk; ++x) keys.push_back(seq[prev * chunk + x]);
        std::vector<double> score;
        for (const int64_t j : keys) {
          double norm = 0, dot = 0;
          for (int64_t d = 0; d < D; ++d) norm += qa[b][h][j][d] * qa[b][h][j][d];
          for (int64_t d = 0; d < D; ++d) dot += qa[b][h][i][d] * qa[b][h][j][d] / std::sqrt(norm);
          double e = dot / std::sqrt(static_cast<double>(D));
          if (!key_valid[j] || (causal && j > i)) e = -1e9;
          if (j == i) e = -1e5;
          score.push_back(e);
        }
        const double max = *std::max_element(score.begin(), score.end());
        double z = 0;
        for (const double e : score) z += std::exp(e - max);
        const int64_t r = s / N;
        round_lse[r * N + i] = max + std::log(z);
        for (size_t x = 0; x < keys.size(); ++x) {
          for (int64_t c2 = 0; c2 < DV; ++c2)
            round_out[r * N + i][c2] += std::exp(score[x] - max) / z * va[b][h][keys[x]][c2];
        }
      }
      for (int64_t i = 0; i < N; ++i) {
        double max = -1e300, z = 0;
        for (int64_t r = 0; r < R; ++r) max = std::max(max, round_lse[r * N + i]);
        for (int64_t r = 0; r < R; ++r) z += std::exp(round_lse[r * N + i] - max);
        for (int64_t r = 0; r < R; ++r) {
          const double w = std::exp(round_lse[r * N + i] - max) / z;
          for (int64_t c = 0; c < DV; ++c) oa[b][h][i][c] += w * round_out[r * N + i][c];
        }
      }
    }
  }
  return out;
}

// Clustered attention for given clusters: each cluster's mean query attends to every key, its
// output is every member's; with `topk` > 0 the improved form: the cluster's top-k keys by the
// mean query's score are re-weighted with each member's own scores, scaled to the mean
// query's mass on them, the other keys keep the mean query's weights.
inline at::Tensor clustered_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& cluster, int64_t clusters, int64_t topk) {
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble),
                   cd = cluster.to(at::kLong);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), S = k.size(2), D = q.size(3),
                DV = v.size(3);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(),
             va = vd.accessor<double, 4>();
  const auto ca = cd.accessor<int64_t, 3>();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  auto softmax = [](std::vector<double> e) {
    const double max = *std::max_element(e.begin(), e.end());
    double z = 0;
    for (auto& x : e) z += (x = std::exp(x - max));
    for (auto& x : e) x /= z;
    return e;
  };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t c = 0; c < clusters; ++c) {
        std::vector<double> mean(D, 0.0);
        int64_t members = 0;
        for (int64_t i = 0; i < N; ++i) {
          if (ca[b][h][i] != c) continue;
          ++members;
          for (int64_t d = 0; d < D; ++d) mean[d] += qa[b][h][i][d];
        }
        if (members == 0) continue;
        for (auto& x : mean) x /= static_cast<double>(members);
        std::vector<double> score(S);
        for (int64_t j = 0; j < S; ++j) {
          double e = 0;
          for (int64_t d = 0; d < D; ++d) e += mean[d] * ka[b][h][j][d];
          score[j] = e * scale;
        }
        const std::vector<double> a = softmax(score);
        std::vector<int64_t> top(S);
        std::iota(top.begin(), top.end(), 0);
        std::sort(top.begin(), top.end(),
                  [&](int64_t x, int64_t y) { return score[x] > score[y]; });
        top.resize(std::min(topk, S));
        std::vector<bool> in_top(S, false);
        double mass = 0;
        for (const int64_t j : top) mass += a[j], in_top[j] = true;
        for (int64_t i = 0; i < N; ++i) {
          if (ca[b][h][i] != c) continue;
          for (int64_t j = 0; j < S; ++j) {
            if (in_top[j]) continue;
            for (int64_t x = 0; x < DV; ++x) oa[b][h][i][x] += a[j] * va[b][h][j][x];
          }
          std::vector<double> own;
          for (const int64_t j : top) {
            double e = 0;
            for (int64_t d = 0; d < D; ++d) e += qa[b][h][i][d] * ka[b][h][j][d];
            own.push_back(e * scale);
          }
          if (own.empty()) continue;
          const std::vector<double> w = softmax(own);
          for (size_t t = 0; t < top.size(); ++t) {
            for (int64_t x = 0; x < DV; ++x) oa[b][h][i][x] += mass * w[t] * va[b][h][top[t]][x];
          }
        }
      }
    }
  }
  return out;
}

// Lloyd's k-means on 0/1 codes [B, h, N, bits] in Hamming distance, one code at a time:
// centroids start at codes ⌊c·N/C⌋; each of `iterations` − 1 rounds assigns every code to
// its nearest centroid (the first on ties) and sets each non-empty cluster's centroid bits to
// its members' strict majority; a last assignment. → [B, h, N] long.
inline at::Tensor hamming_kmeans_reference(const at::Tensor& codes, int64_t clusters,
                                           int64_t iterations) {
  const at::Tensor cd = codes.to(at::kDouble);
  const int64_t B = codes.size(0), H = codes.size(1), N = codes.size(2), K = codes.size(3);
  const auto ca = cd.accessor<double, 4>();
  at::Tensor out = at::zeros({B, H, N}, at::kLong);
  auto oa = out.accessor<int64_t, 3>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      std::vector<std::vector<int>> centroid(clusters, std::vector<int>(K));
      for (int64_t c = 0; c < clusters; ++c) {
        for (int64_t x = 0; x < K; ++x) centroid[c][x] = ca[b][h][c * N / clusters][x] > 0.5;
      }
      std::vector<int64_t> assign(N);
      auto assign_all = [&] {
        for (int64_t i = 0; i < N; ++i) {
          int best = 1 << 30;
          for (int64_t c = 0; c < clusters; ++c) {
            int dist = 0;
            for (int64_t x = 0; x < K; ++x) dist += (ca[b][h][i][x] > 0.5) != centroid[c][x];
            if (dist < best) best = dist, assign[i] = c;
          }
        }
      };
      for (int64_t it = 1; it < iterations; ++it) {
        assign_all();
        for (int64_t c = 0; c < clusters; ++c) {
          std::vector<int> vote(K, 0);
          bool empty = true;
          for (int64_t i = 0; i < N; ++i) {
            if (assign[i] != c) continue;
            empty = false;
            for (int64_t x = 0; x < K; ++x) vote[x] += ca[b][h][i][x] > 0.5 ? 1 : -1;
          }
          if (empty) continue;
          for (int64_t x = 0; x < K; ++x) centroid[c][x] = vote[x] > 0;
        }
      }
      assign_all();
      for (int64_t i = 0; i < N; ++i) oa[b][h][i] = assign[i];
    }
  }
  return out;
}

}  // namespace attnseg::test
