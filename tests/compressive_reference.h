// The compressive and SAC cores as float64 loops over tokens, sharing nothing with the
// implementation: test_sequence_compressive.cpp and the block harness (test_blocks.cpp) compare
// the cores with them. Tensors are [B, h, N, d].
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <vector>

namespace attnseg::test {

// Softmax attention of one query over a list of (key, value) rows, all [h·d] with head `h` at
// channels h·d .. h·d + d − 1; adds the result for head `h` into out.
inline void attend_rows(const std::vector<double>& query,
                        const std::vector<std::vector<double>>& keys,
                        const std::vector<std::vector<double>>& values, int64_t head, int64_t d,
                        std::vector<double>& out) {
  std::vector<double> w(keys.size());
  double max = -1e300, z = 0;
  for (size_t j = 0; j < keys.size(); ++j) {
    double e = 0;
    for (int64_t c = 0; c < d; ++c) e += query[head * d + c] * keys[j][head * d + c];
    max = std::max(max, w[j] = e / std::sqrt(static_cast<double>(d)));
  }
  for (auto& x : w) z += (x = std::exp(x - max));
  for (size_t j = 0; j < keys.size(); ++j) {
    for (int64_t c = 0; c < d; ++c) out[head * d + c] += w[j] / z * values[j][head * d + c];
  }
}

// The compression f_c of a list of rows (oldest first): zero rows prepended to a multiple of c,
// then slot p, channel o = bias[o] + Σ_i Σ_t weight[o][i][t] · row[p·c + t][i].
inline std::vector<std::vector<double>> compress_rows(std::vector<std::vector<double>> rows,
                                                      const at::Tensor& weight,
                                                      const at::Tensor& bias) {
  const at::Tensor wd = weight.to(at::kDouble), bd = bias.to(at::kDouble);
  const auto wa = wd.accessor<double, 3>();
  const auto ba = bd.accessor<double, 1>();
  const int64_t channels = wd.size(0), c = wd.size(2);
  while (rows.size() % c != 0) rows.insert(rows.begin(), std::vector<double>(channels, 0.0));
  std::vector<std::vector<double>> slots;
  for (size_t p = 0; p < rows.size() / c; ++p) {
    std::vector<double> slot(channels);
    for (int64_t o = 0; o < channels; ++o) {
      double acc = ba[o];
      for (int64_t i = 0; i < channels; ++i) {
        for (int64_t t = 0; t < c; ++t) acc += wa[o][i][t] * rows[p * c + t][i];
      }
      slot[o] = acc;
    }
    slots.push_back(slot);
  }
  return slots;
}

// Compressive attention from its description, one batch item at a time: segment after segment,
// each query attends to [compressed slots, memory rows, the segment's first `real` tokens];
// then the segment's real rows are appended to the memory, rows beyond mem_len leave it oldest
// first, are compressed (f_c, separately for keys and values) and appended to the compressed
// memory, which keeps its newest cmem_len slots. Memories start empty. Outputs at padded
// queries are compared too (they attend like any query in their segment).
inline at::Tensor compressive_reference(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, int64_t real, int64_t segment,
                                        int64_t mem_len, int64_t cmem_len,
                                        const at::Tensor& k_weight, const at::Tensor& k_bias,
                                        const at::Tensor& v_weight, const at::Tensor& v_bias) {
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3);
  // rows[b][n] = the token's channels over all heads.
  auto rows_of = [&](const at::Tensor& x) {
    const at::Tensor xd = x.to(at::kDouble);
    const auto xa = xd.accessor<double, 4>();
    std::vector<std::vector<std::vector<double>>> rows(
        B, std::vector<std::vector<double>>(N, std::vector<double>(H * D)));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t h = 0; h < H; ++h) {
          for (int64_t c = 0; c < D; ++c) rows[b][n][h * D + c] = xa[b][h][n][c];
        }
      }
    }
    return rows;
  };
  const auto qr = rows_of(q), kr = rows_of(k), vr = rows_of(v);
  at::Tensor out = at::zeros({B, H, N, D}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    std::deque<std::vector<double>> mk, mv, ck, cv;
    for (int64_t start = 0; start < N; start += segment) {
      std::vector<std::vector<double>> keys(ck.begin(), ck.end()), values(cv.begin(), cv.end());
      keys.insert(keys.end(), mk.begin(), mk.end());
      values.insert(values.end(), mv.begin(), mv.end());
      for (int64_t j = start; j < std::min(start + segment, real); ++j) {
        keys.push_back(kr[b][j]);
        values.push_back(vr[b][j]);
      }
      for (int64_t i = start; i < start + segment; ++i) {
        std::vector<double> o(H * D, 0.0);
        for (int64_t h = 0; h < H; ++h) attend_rows(qr[b][i], keys, values, h, D, o);
        for (int64_t h = 0; h < H; ++h) {
          for (int64_t c = 0; c < D; ++c) oa[b][h][i][c] = o[h * D + c];
        }
      }
      for (int64_t j = start; j < std::min(start + segment, real); ++j) {
        mk.push_back(kr[b][j]);
        mv.push_back(vr[b][j]);
      }
      std::vector<std::vector<double>> old_k, old_v;
      while (static_cast<int64_t>(mk.size()) > mem_len) {
        old_k.push_back(mk.front());
        old_v.push_back(mv.front());
        mk.pop_front();
        mv.pop_front();
      }
      if (old_k.empty() || cmem_len == 0) continue;
      for (const auto& slot : compress_rows(old_k, k_weight, k_bias)) ck.push_back(slot);
      for (const auto& slot : compress_rows(old_v, v_weight, v_bias)) cv.push_back(slot);
      while (static_cast<int64_t>(ck.size()) > cmem_len) {
        ck.pop_front();
        cv.pop_front();
      }
    }
  }
  return out;
}

// Attention over given edges: out_i = Σ_t softmax_t(q_i·k_{E[i,t]}/√d + s[i,t]) v_{E[i,t]},
// a −inf score dropping its edge.
inline at::Tensor sac_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& edges, const at::Tensor& scores) {
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble),
                   sd = scores.to(at::kDouble), ed = edges.to(at::kLong);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3), DV = v.size(3),
                K = edges.size(3);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(),
             va = vd.accessor<double, 4>(), sa = sd.accessor<double, 4>();
  const auto ea = ed.accessor<int64_t, 4>();
  at::Tensor out = at::zeros({B, H, N, DV}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> w(K);
        double max = -1e300, z = 0;
        for (int64_t t = 0; t < K; ++t) {
          double e = 0;
          for (int64_t c = 0; c < D; ++c) e += qa[b][h][i][c] * ka[b][h][ea[b][h][i][t]][c];
          w[t] = e / std::sqrt(static_cast<double>(D)) + sa[b][h][i][t];
          if (std::isfinite(w[t])) max = std::max(max, w[t]);
        }
        for (auto& x : w) z += (x = std::isfinite(x) ? std::exp(x - max) : 0.0);
        for (int64_t c = 0; c < DV; ++c) {
          double acc = 0;
          for (int64_t t = 0; t < K; ++t) acc += w[t] / z * va[b][h][ea[b][h][i][t]][c];
          oa[b][h][i][c] = acc;
        }
      }
    }
  }
  return out;
}

}  // namespace attnseg::test
