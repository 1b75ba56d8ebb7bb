// The one harness every block goes through (shape on odd sizes, gradient to every parameter,
// save/load round trip, functional core against float64), plus the properties that make
// nonlocal and ccnet real.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "attention/autonl.h"
#include "attention/axial.h"
#include "attention/ccnet.h"
#include "attention/compressive.h"
#include "attention/clustered.h"
#include "attention/cbam.h"
#include "attention/efficient.h"
#include "attention/ema.h"
#include "attention/fast_l2.h"
#include "attention/gcnet.h"
#include "attention/handcrafted.h"
#include "attention/pattern.h"
#include "attention/isa.h"
#include "attention/linear.h"
#include "attention/linformer.h"
#include "attention/memory_compressed.h"
#include "attention/functional.h"
#include "attention/nonlocal.h"
#include "attention/performer.h"
#include "attention/permutohedral.h"
#include "attention/sac.h"
#include "attention/product_key.h"
#include "attention/reformer.h"
#include "attention/registry.h"
#include "attention/routing.h"
#include "attention/scram.h"
#include "attention/sinkhorn.h"
#include "attention/synthesizer.h"
#include "core/cpu_bf16.h"
#include "core/device.h"
#include "engine/counters.h"
#include "compressive_reference.h"
#include "fixture.h"
#include "memory_reference.h"
#include "hashing_reference.h"
#include "permutohedral_reference.h"
#include "routing_reference.h"
#include "sequence_reference.h"

namespace attnseg {
namespace {

// --- float64 references, written as plain loops over pixels -----------------------------

// softmax over all positions of q_i·k_j/√D, then the weighted sum of v.
at::Tensor nonlocal_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const auto qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = q.size(0), D = q.size(1), H = q.size(2), W = q.size(3), C = v.size(1);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  at::Tensor out = at::zeros({B, C, H, W}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  std::vector<double> w(H * W);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < H * W; ++i) {
      double max = -1e300;
      for (int64_t j = 0; j < H * W; ++j) {
        double e = 0;
        for (int64_t d = 0; d < D; ++d) e += qa[b][d][i / W][i % W] * ka[b][d][j / W][j % W];
        w[j] = e / std::sqrt(static_cast<double>(D));
        max = std::max(max, w[j]);
      }
      double z = 0;
      for (auto& x : w) z += (x = std::exp(x - max));
      for (int64_t c = 0; c < C; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < H * W; ++j) acc += w[j] / z * va[b][c][j / W][j % W];
        oa[b][c][i / W][i % W] = acc;
      }
    }
  }
  return out;
}

// For each pixel: the set of its row and its column, centre once, one softmax.
at::Tensor criss_cross_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const auto qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = q.size(0), D = q.size(1), H = q.size(2), W = q.size(3), C = v.size(1);
  const auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  at::Tensor out = at::zeros({B, C, H, W}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        std::vector<std::pair<int64_t, int64_t>> set;
        for (int64_t yy = 0; yy < H; ++yy) set.emplace_back(yy, x);
        for (int64_t xx = 0; xx < W; ++xx) {
          if (xx != x) set.emplace_back(y, xx);
        }
        std::vector<double> e;
        double max = -1e300;
        for (auto [yy, xx] : set) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += qa[b][d][y][x] * ka[b][d][yy][xx];
          e.push_back(s);
          max = std::max(max, s);
        }
        double z = 0;
        for (auto& s : e) z += (s = std::exp(s - max));
        for (int64_t c = 0; c < C; ++c) {
          double acc = 0;
          for (size_t j = 0; j < set.size(); ++j) acc += e[j] / z * va[b][c][set[j].first][set[j].second];
          oa[b][c][y][x] = acc;
        }
      }
    }
  }
  return out;
}

// Efficient attention in its dense order: per head, a_ij = Σ_d softmax_d(q_i)_d · softmax_j(k_d)_j
// formed for every pair (i, j), then out_i = Σ_j a_ij v_j.
at::Tensor efficient_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads) {
  const auto qd = q.to(at::kDouble).flatten(2), kd = k.to(at::kDouble).flatten(2), vd = v.to(at::kDouble).flatten(2);
  const int64_t B = q.size(0), DK = q.size(1) / heads, DV = v.size(1) / heads, N = qd.size(2);
  const auto qa = qd.accessor<double, 3>(), ka = kd.accessor<double, 3>(), va = vd.accessor<double, 3>();
  at::Tensor out = at::zeros({B, v.size(1), N}, at::kDouble);
  auto oa = out.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<std::vector<double>> qs(N, std::vector<double>(DK)), ks(DK, std::vector<double>(N));
      for (int64_t i = 0; i < N; ++i) {
        double z = 0;
        for (int64_t d = 0; d < DK; ++d) z += std::exp(qa[b][h * DK + d][i]);
        for (int64_t d = 0; d < DK; ++d) qs[i][d] = std::exp(qa[b][h * DK + d][i]) / z;
      }
      for (int64_t d = 0; d < DK; ++d) {
        double z = 0;
        for (int64_t j = 0; j < N; ++j) z += std::exp(ka[b][h * DK + d][j]);
        for (int64_t j = 0; j < N; ++j) ks[d][j] = std::exp(ka[b][h * DK + d][j]) / z;
      }
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t j = 0; j < N; ++j) {
          double a = 0;
          for (int64_t d = 0; d < DK; ++d) a += qs[i][d] * ks[d][j];
          for (int64_t c = 0; c < DV; ++c) oa[b][h * DV + c][i] += a * va[b][h * DV + c][j];
        }
      }
    }
  }
  return out.reshape(v.sizes());
}

// GCNet's pooling: one softmax over all positions of the mask, then the weighted sum of x.
at::Tensor global_context_reference(const at::Tensor& x, const at::Tensor& mask) {
  const auto xd = x.to(at::kDouble).flatten(2), md = mask.to(at::kDouble).flatten(2);
  const int64_t B = x.size(0), C = x.size(1), N = xd.size(2);
  at::Tensor out = at::zeros({B, C, 1, 1}, at::kDouble);
  for (int64_t b = 0; b < B; ++b) {
    double max = -1e300, z = 0;
    for (int64_t n = 0; n < N; ++n) max = std::max(max, md[b][0][n].item<double>());
    std::vector<double> w(N);
    for (int64_t n = 0; n < N; ++n) z += (w[n] = std::exp(md[b][0][n].item<double>() - max));
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += w[n] / z * xd[b][c][n].item<double>();
      out[b][c][0][0] = acc;
    }
  }
  return out;
}

// FANet in its quadratic order: a_ij = q̂_i·k̂_j (cosine similarity), out_i = Σ_j a_ij v_j / N.
at::Tensor fast_l2_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const auto qd = q.to(at::kDouble).flatten(2), kd = k.to(at::kDouble).flatten(2), vd = v.to(at::kDouble).flatten(2);
  const int64_t B = q.size(0), D = q.size(1), C = v.size(1), N = qd.size(2);
  const auto qa = qd.accessor<double, 3>(), ka = kd.accessor<double, 3>(), va = vd.accessor<double, 3>();
  at::Tensor out = at::zeros({B, C, N}, at::kDouble);
  auto oa = out.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        double dot = 0, nq = 0, nk = 0;
        for (int64_t d = 0; d < D; ++d) {
          dot += qa[b][d][i] * ka[b][d][j];
          nq += qa[b][d][i] * qa[b][d][i];
          nk += ka[b][d][j] * ka[b][d][j];
        }
        const double a = dot / std::sqrt(nq) / std::sqrt(nk) / static_cast<double>(N);
        for (int64_t c = 0; c < C; ++c) oa[b][c][i] += a * va[b][c][j];
      }
    }
  }
  return out.reshape(v.sizes());
}

// EM from the equations, one pixel and one basis at a time: E z_nk = softmax_k(x_n·μ_k);
// M μ_k = Σ_n x_n z_nk / (1e-6 + Σ_n z_nk), then μ_k /= (1e-6 + ‖μ_k‖). Returns μ_T.
at::Tensor em_reference(const at::Tensor& x, const at::Tensor& mu0, int64_t iterations) {
  const auto xd = x.to(at::kDouble);
  at::Tensor mu = mu0.to(at::kDouble).clone();
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2), K = mu.size(2);
  const auto xa = xd.accessor<double, 3>();
  for (int64_t t = 0; t < iterations; ++t) {
    auto ma = mu.accessor<double, 3>();
    std::vector<double> z(N * K);
    at::Tensor next = at::zeros_like(mu);
    auto na = next.accessor<double, 3>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t n = 0; n < N; ++n) {
        double max = -1e300, sum = 0;
        for (int64_t k = 0; k < K; ++k) {
          double e = 0;
          for (int64_t c = 0; c < C; ++c) e += xa[b][c][n] * ma[b][c][k];
          z[n * K + k] = e;
          max = std::max(max, e);
        }
        for (int64_t k = 0; k < K; ++k) sum += (z[n * K + k] = std::exp(z[n * K + k] - max));
        for (int64_t k = 0; k < K; ++k) z[n * K + k] /= sum;
      }
      for (int64_t k = 0; k < K; ++k) {
        double mass = 0, norm = 0;
        for (int64_t n = 0; n < N; ++n) mass += z[n * K + k];
        for (int64_t c = 0; c < C; ++c) {
          double acc = 0;
          for (int64_t n = 0; n < N; ++n) acc += xa[b][c][n] * z[n * K + k];
          na[b][c][k] = acc / (1e-6 + mass);
          norm += na[b][c][k] * na[b][c][k];
        }
        for (int64_t c = 0; c < C; ++c) na[b][c][k] /= 1e-6 + std::sqrt(norm);
      }
    }
    mu = next;
  }
  return mu;
}

// Multi-head attention over each sequence, one head, query and key at a time.
at::Tensor multihead_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads) {
  const auto qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t S = q.size(0), T = q.size(1), D = q.size(2), E = D / heads;
  const auto qa = qd.accessor<double, 3>(), ka = kd.accessor<double, 3>(), va = vd.accessor<double, 3>();
  at::Tensor out = at::zeros({S, T, D}, at::kDouble);
  auto oa = out.accessor<double, 3>();
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> w(T);
        double max = -1e300, z = 0;
        for (int64_t j = 0; j < T; ++j) {
          double e = 0;
          for (int64_t d = 0; d < E; ++d) e += qa[s][i][h * E + d] * ka[s][j][h * E + d];
          max = std::max(max, w[j] = e / std::sqrt(static_cast<double>(E)));
        }
        for (auto& x : w) z += (x = std::exp(x - max));
        for (int64_t d = 0; d < E; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < T; ++j) acc += w[j] / z * va[s][j][h * E + d];
          oa[s][i][h * E + d] = acc;
        }
      }
    }
  }
  return out;
}

// LightNL from its equation, pixel by pixel: out_i = Σ_j (θ_i·φ_j) g_j / N, j over the
// subsampled positions, N the full count.
at::Tensor light_nonlocal_reference(const at::Tensor& theta, const at::Tensor& phi, const at::Tensor& g) {
  const auto td = theta.to(at::kDouble).flatten(2), pd = phi.to(at::kDouble).flatten(2), gd = g.to(at::kDouble).flatten(2);
  const int64_t B = td.size(0), D = td.size(1), N = td.size(2), M = pd.size(2), C = gd.size(1);
  const auto ta = td.accessor<double, 3>(), pa = pd.accessor<double, 3>(), ga = gd.accessor<double, 3>();
  at::Tensor out = at::zeros({B, C, N}, at::kDouble);
  auto oa = out.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < M; ++j) {
        double a = 0;
        for (int64_t d = 0; d < D; ++d) a += ta[b][d][i] * pa[b][d][j];
        for (int64_t c = 0; c < C; ++c) oa[b][c][i] += a * ga[b][c][j] / static_cast<double>(N);
      }
    }
  }
  return out.reshape({B, C, theta.size(2), theta.size(3)});
}

// Softmax attention restricted to the given keys per query, one query at a time.
at::Tensor sparse_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& idx) {
  const auto qd = q.to(at::kDouble).flatten(2), kd = k.to(at::kDouble).flatten(2), vd = v.to(at::kDouble).flatten(2);
  const int64_t B = qd.size(0), D = qd.size(1), N = qd.size(2), C = vd.size(1), K = idx.size(2);
  const auto qa = qd.accessor<double, 3>(), ka = kd.accessor<double, 3>(), va = vd.accessor<double, 3>();
  const auto ia = idx.accessor<int64_t, 3>();
  at::Tensor out = at::zeros({B, C, N}, at::kDouble);
  auto oa = out.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> w(K);
      double max = -1e300, z = 0;
      for (int64_t t = 0; t < K; ++t) {
        double e = 0;
        for (int64_t d = 0; d < D; ++d) e += qa[b][d][i] * ka[b][d][ia[b][i][t]];
        max = std::max(max, w[t] = e / std::sqrt(static_cast<double>(D)));
      }
      for (auto& x : w) z += (x = std::exp(x - max));
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t t = 0; t < K; ++t) oa[b][c][i] += w[t] / z * va[b][c][ia[b][i][t]];
      }
    }
  }
  return out.reshape(v.sizes());
}

double relative_error(const at::Tensor& out, const at::Tensor& ref) {
  return ((out.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
}

// The functional core of each block against its float64 reference on an odd-sized input.
// Every registered block must appear here: a block without a reference check fails.
using CoreCheck = std::function<double()>;
// A patterned block's core is the pattern engine on its declared pattern: on a 7×9 map, over
// its tokens and extra keys, in chunks that do not divide the 63 queries, against the engine
// written query by query over each query's declared keys (handcrafted: its fixed weights).
CoreCheck patterned_check(const std::string& name, uint64_t seed) {
  return [name, seed] {
    torch::manual_seed(seed);
    auto block = std::dynamic_pointer_cast<PatternedBlockImpl>(build_block(name, 16));
    const int64_t h = 7, w = 9, keys = h * w + static_cast<int64_t>(block->extra_key_sources(h, w).size());
    const Pattern pattern = block->build_pattern(h, w);
    const auto q = torch::randn({2, 4, h * w, 5}, torch::kDouble), k = torch::randn({2, 4, keys, 5}, torch::kDouble),
               v = torch::randn({2, 4, keys, 6}, torch::kDouble);
    if (auto handcrafted = std::dynamic_pointer_cast<HandcraftedImpl>(block)) {
      const at::Tensor weights = handcrafted->weights(h, w).to(torch::kDouble);
      return relative_error(functional::patterned_mix(v, pattern, weights, 10),
                            test::patterned_reference(q, k, v, pattern, 0.0, weights));
    }
    const at::Tensor ref = test::patterned_reference(q, k, v, pattern, 0.4);
    // The path the block takes: its pattern cut into its tiles, one group per head or one for all.
    const std::vector<TiledPattern> tiles = block->tiled(h, w);
    std::vector<at::Tensor> heads;
    for (size_t g = 0; g < tiles.size(); ++g) {
      const int64_t first = tiles.size() == 1 ? 0 : static_cast<int64_t>(g), count = tiles.size() == 1 ? 4 : 1;
      heads.push_back(functional::tiled_attention(q.narrow(1, first, count), k.narrow(1, first, count),
                                                  v.narrow(1, first, count), tiles[g], 0.4, 3));
    }
    return std::max(relative_error(functional::patterned_attention(q, k, v, pattern, 0.4, 10), ref),
                    relative_error(at::cat(heads, 1), ref));
  };
}

const std::map<std::string, CoreCheck>& core_checks() {
  static const std::map<std::string, CoreCheck> checks{
      // The identity: on odd sizes the output is the input, bit for bit (anything else: +inf).
      {"none",
       [] {
         torch::manual_seed(12);
         const at::Tensor x = torch::randn({2, 6, 7, 9});
         const at::Tensor y = build_block("none", 6)->forward(x);
         return y.sizes() == x.sizes() && torch::equal(y, x) ? 0.0 : std::numeric_limits<double>::infinity();
       }},
      {"nonlocal",
       [] {
         torch::manual_seed(1);
         const auto q = torch::randn({2, 5, 7, 9}), k = torch::randn({2, 5, 7, 9}), v = torch::randn({2, 6, 7, 9});
         return relative_error(functional::nonlocal_attention(q, k, v), nonlocal_reference(q, k, v));
       }},
      {"ccnet",
       [] {
         torch::manual_seed(2);
         const auto q = torch::randn({2, 5, 7, 9}), k = torch::randn({2, 5, 7, 9}), v = torch::randn({2, 6, 7, 9});
         return relative_error(functional::criss_cross_attention(q, k, v), criss_cross_reference(q, k, v));
       }},
      {"efficient",
       [] {
         torch::manual_seed(3);
         const auto q = torch::randn({2, 6, 7, 9}), k = torch::randn({2, 6, 7, 9}), v = torch::randn({2, 4, 7, 9});
         return relative_error(functional::efficient_attention(q, k, v, 2), efficient_reference(q, k, v, 2));
       }},
      {"gcnet",
       [] {
         torch::manual_seed(4);
         const auto x = torch::randn({2, 6, 7, 9}), mask = torch::randn({2, 1, 7, 9});
         return relative_error(functional::global_context(x, mask), global_context_reference(x, mask));
       }},
      {"fast_l2",
       [] {
         torch::manual_seed(5);
         const auto q = torch::randn({2, 5, 7, 9}), k = torch::randn({2, 5, 7, 9}), v = torch::randn({2, 6, 7, 9});
         return relative_error(functional::fast_l2_attention(q, k, v), fast_l2_reference(q, k, v));
       }},
      {"ema",
       [] {
         torch::manual_seed(6);
         const auto x = torch::randn({2, 6, 63}), mu = torch::randn({2, 6, 5});
         return relative_error(functional::em_bases(x, mu, 3).first, em_reference(x, mu, 3));
       }},
      {"axial",
       [] {
         torch::manual_seed(7);
         const auto q = torch::randn({5, 9, 8}), k = torch::randn({5, 9, 8}), v = torch::randn({5, 9, 8});
         return relative_error(functional::multihead_attention(q, k, v, 2), multihead_reference(q, k, v, 2));
       }},
      // ISA's core is its two regroupings: each group gathered pixel by pixel in float64.
      {"isa",
       [] {
         torch::manual_seed(8);
         const at::Tensor x = torch::randn({2, 3, 12, 15}, torch::kDouble);
         const int64_t ph = 4, pw = 3, gh = 3, gw = 5;
         const at::Tensor far = functional::interlaced_groups(x, ph, pw), near = functional::local_groups(x, ph, pw);
         double error = 0;
         for (int64_t b = 0; b < 2; ++b) {
           for (int64_t y = 0; y < 12; ++y) {
             for (int64_t xx = 0; xx < 15; ++xx) {
               const at::Tensor pixel = x[b].select(1, y).select(1, xx);
               const int64_t i = y % ph, j = xx % pw, gy = y / ph, gx = xx / pw;
               error += (far[(b * ph + i) * pw + j].select(1, gy).select(1, gx) - pixel).abs().sum().item<double>();
               error += (near[(b * gh + gy) * gw + gx].select(1, i).select(1, j) - pixel).abs().sum().item<double>();
             }
           }
         }
         error += (functional::from_interlaced_groups(far, 2, ph, pw) - x).abs().sum().item<double>();
         return error;
       }},
      {"autonl",
       [] {
         torch::manual_seed(9);
         const auto theta = torch::randn({2, 3, 7, 9}), phi = torch::randn({2, 3, 4, 5}), g = torch::randn({2, 6, 4, 5});
         const at::Tensor ref = light_nonlocal_reference(theta, phi, g);
         return std::max(relative_error(functional::light_nonlocal(theta, phi, g, true), ref),
                         relative_error(functional::light_nonlocal(theta, phi, g, false), ref));
       }},
      {"scram",
       [] {
         torch::manual_seed(10);
         const auto q = torch::randn({2, 5, 7, 9}), k = torch::randn({2, 5, 7, 9}), v = torch::randn({2, 6, 7, 9});
         const at::Tensor idx = functional::patchmatch_topk(q, k, 6, 2, 1);
         return relative_error(functional::sparse_attention(q, k, v, idx), sparse_attention_reference(q, k, v, idx));
       }},
      // The lattice against itself written as a dense kernel matrix (float64), on odd sizes with
      // queries other than the keys; how well that lattice approximates Gaussian attention is
      // test_permutohedral.cpp's business.
      {"permutohedral",
       [] {
         torch::manual_seed(11);
         const auto q = 1.5 * torch::randn({2, 3, 7, 9}), k = 1.5 * torch::randn({2, 3, 5, 7}),
                    v = torch::randn({2, 6, 5, 7});
         return relative_error(functional::permutohedral_attention(q, k, v),
                               test::permutohedral_reference(q, k, v, 1.0, true));
       }},
      // The sequence cores on [B, heads, N, d] with N odd (31 tokens); the causal linear form in
      // chunks of 4, so the last chunk is padded.
      {"linear",
       [] {
         torch::manual_seed(13);
         const auto q = torch::randn({2, 3, 31, 5}), k = torch::randn({2, 3, 31, 5}), v = torch::randn({2, 3, 31, 6});
         return std::max(relative_error(functional::linear_attention(q, k, v, false, 1e-6),
                                        test::linear_attention_reference(q, k, v, false, 1e-6)),
                         relative_error(functional::linear_attention(q, k, v, true, 1e-6, 4),
                                        test::linear_attention_reference(q, k, v, true, 1e-6)));
       }},
      {"performer",
       [] {
         torch::manual_seed(14);
         const auto q = torch::randn({2, 3, 31, 5}), k = torch::randn({2, 3, 31, 5}), v = torch::randn({2, 3, 31, 6});
         const at::Tensor w = functional::orthogonal_random_features(12, 5);
         return relative_error(functional::performer_attention(q, k, v, w), test::performer_reference(q, k, v, w));
       }},
      {"linformer",
       [] {
         torch::manual_seed(15);
         const auto q = torch::randn({2, 3, 31, 5}), k = torch::randn({2, 3, 31, 5}), v = torch::randn({2, 3, 31, 6});
         const auto e = torch::randn({7, 31}) * 0.3, f = torch::randn({7, 31}) * 0.3;
         return relative_error(functional::linformer_attention(q, k, v, e, f), test::linformer_reference(q, k, v, e, f));
       }},
      // 31 real tokens padded to 32 in segments of 4; a memory of 6 (evictions not a multiple of
      // c = 3, so f_c pads) and 3 compressed slots.
      {"compressive",
       [] {
         torch::manual_seed(16);
         const auto q = torch::randn({2, 3, 32, 5}), k = torch::randn({2, 3, 32, 5}), v = torch::randn({2, 3, 32, 5});
         const auto kw = torch::randn({15, 15, 3}) * 0.2, kb = torch::randn({15}) * 0.2,
                    vw = torch::randn({15, 15, 3}) * 0.2, vb = torch::randn({15}) * 0.2;
         const TokenGrid grid = padded_grid(TokenGrid{1, 31, TokenOrder::raster, {}, 0, {}}, 1, torch::kCPU);
         functional::CompressiveMemory memory;
         const at::Tensor out = functional::compressive_attention(q, k, v, grid.key_valid, memory, {4, 6, 3, 3}, kw, kb,
                                                                  vw, vb, false, nullptr, nullptr);
         return relative_error(out, test::compressive_reference(q, k, v, 31, 4, 6, 3, kw, kb, vw, vb));
       }},
      // The edges the predictor picks on 31 real tokens padded to 32 (chunks of 8, k = 5), then
      // attention over exactly those edges.
      {"sac",
       [] {
         torch::manual_seed(17);
         const auto q = torch::randn({2, 3, 32, 5}), k = torch::randn({2, 3, 32, 5}), v = torch::randn({2, 3, 32, 6});
         const TokenGrid grid = padded_grid(TokenGrid{1, 31, TokenOrder::raster, {}, 0, {}}, 1, torch::kCPU);
         const auto [edges, scores] =
             functional::sac_edges(torch::randn({2, 3, 32, 4}), grid.key_valid, torch::randn({3, 4, 3}), 8, 5);
         return relative_error(functional::sac_attention(q, k, v, edges, scores),
                               test::sac_reference(q, k, v, edges, scores));
       }},
      // 4 centroids with windows of 9 of the 31 tokens: some tokens in several windows, some in none.
      {"routing",
       [] {
         torch::manual_seed(16);
         const auto q = torch::randn({2, 3, 31, 5}), k = torch::randn({2, 3, 31, 5}), v = torch::randn({2, 3, 31, 6});
         const at::Tensor centroids = functional::unit_normalise(torch::randn({3, 4, 5}));
         return relative_error(functional::routing_attention(q, k, v, centroids, 9),
                               test::routing_reference(q, k, v, centroids, 9));
       }},
      // 5 blocks of 7 (35 tokens, the last 2 padding, their q, k, v not zero); positive block sums
      // and weights keep the rows' largest entries apart.
      {"sinkhorn",
       [] {
         torch::manual_seed(17);
         const auto q = torch::randn({2, 3, 35, 5}) + 1, k = torch::randn({2, 3, 35, 5}) + 1,
                    v = torch::randn({2, 3, 35, 6});
         const at::Tensor w = torch::rand({3, 10, 5}) + 0.1;
         std::vector<bool> real(35, true);
         real[33] = real[34] = false;
         const at::Tensor valid = torch::arange(35) < 33;
         return relative_error(functional::sinkhorn_attention(q, k, v, w, valid, 7, 5, 0.75, {}),
                               test::sinkhorn_reference(q, k, v, w, real, 7, 5, 0.75));
       }},
      // Two local heads in blocks of 8 and two memory heads compressed by 3, on 31 real tokens
      // (a 1×31 map) padded to 32: the block's attend, real outputs against the reference.
      {"memory_compressed",
       [] {
         torch::manual_seed(16);
         MemoryCompressedOptions options(20);
         options.block(8).local_heads(2).host().heads(4).dim_head(5).order("raster");
         MemoryCompressed block(options);
         const auto q = torch::randn({2, 4, 32, 5}), k = torch::randn({2, 4, 32, 5}), v = torch::randn({2, 4, 32, 5});
         const TokenGrid grid = padded_grid(TokenGrid{1, 31, TokenOrder::raster, {}, 0, {}}, 1, torch::kCPU);
         torch::NoGradGuard no_grad;
         return relative_error(block->attend(q, k, v, grid).narrow(2, 0, 31),
                               test::memory_compressed_reference(q, k, v, block->compress_weight, block->compress_bias,
                                                                 3, 8, 2, 31)
                                   .narrow(2, 0, 31));
       }},
      // dense logits from a per-token MLP, then softmax(B) V; the random kinds' R1 R2ᵀ; 31 tokens
      {"synthesizer",
       [] {
         torch::manual_seed(17);
         const auto x = torch::randn({2, 3, 31, 5}), v = torch::randn({2, 3, 31, 6});
         const auto w1 = torch::randn({3, 5, 7}) * 0.4, b1 = torch::randn({3, 7}) * 0.1,
                    w2 = torch::randn({3, 7, 31}) * 0.4, b2 = torch::randn({3, 31}) * 0.1;
         const auto r1 = torch::randn({3, 31, 4}), r2 = torch::randn({3, 31, 4});
         const at::Tensor dense = functional::synthesized_attention(
             functional::dense_synthesizer_logits(x, w1, b1, w2, b2), v);
         const at::Tensor dense_ref =
             test::synthesized_reference(test::dense_synthesizer_logits_reference(x, w1, b1, w2, b2), v);
         const at::Tensor factorized = functional::synthesized_attention(at::matmul(r1, r2.transpose(1, 2)).unsqueeze(0), v);
         const at::Tensor factorized_ref = test::synthesized_reference(test::factorized_logits_reference(r1, r2), v);
         return std::max(relative_error(dense, dense_ref), relative_error(factorized, factorized_ref));
       }},
      // the top-k of the k² candidates, then the weighted read, against a brute force over all
      // n_keys² product keys; 31 tokens, n_keys 9 (M = 81), k 5
      {"product_key",
       [] {
         torch::manual_seed(18);
         const auto q = torch::randn({2, 3, 31, 6}), sub_keys = torch::randn({3, 2, 9, 3}), values = torch::randn({81, 6});
         const auto [scores, indices] = functional::product_key_topk(q, sub_keys, 5);
         const auto [ref_scores, ref_indices] = test::product_key_brute_force(q, sub_keys, 5);
         if (!torch::equal(indices, ref_indices)) return std::numeric_limits<double>::infinity();
         return relative_error(functional::product_key_read(scores, indices, values),
                               test::product_key_read_reference(ref_scores, ref_indices, values));
       }},
      // LSH attention for given buckets: 3 rounds, 31 real tokens padded to 32 in chunks of 8.
      {"reformer",
       [] {
         torch::manual_seed(16);
         const auto qk = torch::randn({2, 3, 32, 5}), v = torch::randn({2, 3, 32, 6});
         const auto buckets = torch::randint(0, 4, {2, 3, 3, 32}, torch::kLong).index_fill(3, torch::tensor({31}), 4);
         std::vector<bool> valid(32, true);
         valid[31] = false;
         const at::Tensor out = functional::lsh_attention(qk, v, buckets, 8, torch::arange(32) < 31, false);
         return relative_error(out.narrow(2, 0, 31),
                               test::lsh_attention_reference(qk, v, buckets, 8, valid, false).narrow(2, 0, 31));
       }},
      // Both forms for given clusters (5 of them, on 31 tokens; improved with the top 7 keys).
      {"clustered",
       [] {
         torch::manual_seed(17);
         const auto q = torch::randn({2, 3, 31, 5}), k = torch::randn({2, 3, 31, 5}), v = torch::randn({2, 3, 31, 6});
         const auto cluster = torch::randint(0, 5, {2, 3, 31}, torch::kLong);
         return std::max(relative_error(functional::clustered_attention(q, k, v, cluster, 5),
                                        test::clustered_reference(q, k, v, cluster, 5, 0)),
                         relative_error(functional::improved_clustered_attention(q, k, v, cluster, 5, 7),
                                        test::clustered_reference(q, k, v, cluster, 5, 7)));
       }},
      // CBAM has no query-key core: the whole block in float32, with the reference module's
      // weights, against the reference's float64 output.
      {"cbam",
       [] {
         const test::Fixture f = test::load_fixture("cbam");
         Cbam block(CbamOptions(32));
         block->eval();
         block->to(torch::kDouble);
         test::copy_weights(*block, f, test::kCbamFixtureNames);
         block->to(torch::kFloat);
         return relative_error(block->forward(f["x"].to(torch::kFloat)), f["y"]);
       }},
      {"sparse_transformer", patterned_check("sparse_transformer", 30)},
      {"longformer", patterned_check("longformer", 31)},
      {"bigbird", patterned_check("bigbird", 32)},
      {"etc", patterned_check("etc", 33)},
      {"star", patterned_check("star", 34)},
      {"bp_transformer", patterned_check("bp_transformer", 35)},
      {"diet", patterned_check("diet", 36)},
      {"multiscale", patterned_check("multiscale", 37)},
      {"jukebox", patterned_check("jukebox", 38)},
      {"gmat", patterned_check("gmat", 39)},
      {"handcrafted", patterned_check("handcrafted", 40)},
  };
  return checks;
}

class BlockTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BlockTest, KeepsShapeOnOddSizes) {
  torch::manual_seed(0);
  const AttentionBlock block = build_block(GetParam(), 32);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{2, 32, 45, 45}, {1, 32, 13, 29}}) {
    const at::Tensor x = torch::randn(shape);
    const at::Tensor y = block->forward(x);
    EXPECT_EQ(y.sizes(), x.sizes());
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  }
}

// A float64 block computes in float64 (the GPU tests' reference): before, linear, performer,
// routing, sinkhorn and sac cast their queries, keys and values to float, which a float64
// projection after them refused ("expected scalar type Float but found Double").
TEST_P(BlockTest, AFloat64BlockOnAFloat64InputComputesAndDifferentiatesInFloat64) {
  torch::manual_seed(0);
  const AttentionBlock block = build_block(GetParam(), 16);
  test::to_floating(*block, at::kCPU, at::kDouble);
  block->eval();
  const std::vector<int64_t> shape = GetParam() == "scram" ? std::vector<int64_t>{2, 16, 3, 5}
                                                             : std::vector<int64_t>{2, 16, 9, 13};
  const at::Tensor x = torch::randn(shape, at::kDouble).requires_grad_();
  const at::Tensor y = block->forward(x);
  EXPECT_EQ(y.scalar_type(), at::kDouble);
  y.square().sum().backward();
  EXPECT_EQ(x.grad().scalar_type(), at::kDouble);
  for (const auto& p : block->named_parameters()) {
    if (p.value().grad().defined()) {
      EXPECT_EQ(p.value().grad().scalar_type(), at::kDouble) << p.key();
    }
  }
}

TEST_P(BlockTest, GradientReachesEveryParameterAndTheInput) {
  torch::manual_seed(0);
  const AttentionBlock block = build_block(GetParam(), 16);
  // Blocks start as the identity through zero-initialised scales; give those a value, or
  // the gradient to everything before them would be zero by construction.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : block->parameters()) {
      if (p.abs().sum().item<double>() == 0) p.normal_(0.0, 0.5);
    }
  }
  const at::Tensor x = torch::randn({2, 16, 11, 13}, torch::requires_grad());
  const at::Tensor y = block->forward(x);
  (y * torch::randn_like(y)).sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0);
  for (const auto& item : block->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0) << item.key();
    EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>()) << item.key();
  }
}

// Under CPU autocast to bf16 (products and convolutions in bf16), the output, the gradient
// to the input and the gradient to the parameters (all of them as one vector: the update an
// optimizer takes) stay within 1% of fp32 in relative L2 norm. Only for blocks that declare
// bf16.
TEST_P(BlockTest, Bf16AutocastForwardAndBackwardStayWithinOnePercentOfFp32) {
  if (!find_block(GetParam()).caps.bf16) GTEST_SKIP() << GetParam() << " declares no bf16 support";
  torch::manual_seed(0);
  const AttentionBlock block = build_block(GetParam(), 16);
  {
    torch::NoGradGuard no_grad;  // as above: no part of the block hidden behind a zero scale
    for (auto& p : block->parameters()) {
      if (p.abs().sum().item<double>() == 0) p.normal_(0.0, 0.5);
    }
  }
  block->eval();
  const at::Tensor x0 = torch::randn({2, 16, 7, 9});
  const at::Tensor weight = torch::randn({2, 16, 7, 9});
  struct Pass {
    at::Tensor y, dx;
    std::vector<at::Tensor> dparams;
  };
  auto pass = [&](Precision precision) {
    Runtime runtime;
    runtime.precision = precision;
    for (auto& p : block->parameters()) p.mutable_grad().reset();
    const at::Tensor x = x0.clone().requires_grad_();
    at::Tensor y;
    {
      AutocastGuard autocast(runtime);
      y = block->forward(x);
    }
    (y.to(torch::kFloat) * weight).sum().backward();
    Pass out{y.detach().to(torch::kFloat), x.grad().clone(), {}};
    for (const auto& p : block->parameters()) out.dparams.push_back(p.grad().clone());
    return out;
  };
  const Pass fp32 = pass(Precision::fp32);
  const Pass bf16 = pass(Precision::bf16);
  auto error = [](const at::Tensor& a, const at::Tensor& ref) {
    return (a.to(torch::kFloat) - ref).norm().item<double>() / ref.norm().item<double>();
  };
  auto flat = [](const std::vector<at::Tensor>& grads) {
    std::vector<at::Tensor> parts{at::zeros({1})};
    for (const auto& g : grads) parts.push_back(g.reshape(-1).to(torch::kFloat));
    return at::cat(parts);
  };
  const double dy = error(bf16.y, fp32.y), dx = error(bf16.dx, fp32.dx);
  const double dp = fp32.dparams.empty() ? 0.0 : error(flat(bf16.dparams), flat(fp32.dparams));
  std::printf("%s bf16 against fp32, relative L2: output %.4f, input gradient %.4f, parameter gradients %.4f\n",
              GetParam().c_str(), dy, dx, dp);
  EXPECT_LE(dy, 1e-2) << "output";
  EXPECT_LE(dx, 1e-2) << "input gradient";
  if (!fp32.dparams.empty()) {
    // Parameter gradients sum over every position: where LibTorch's CPU bf16 products keep
    // those sums in bf16 (Runtime.TheBf16Probe…), they are 1-2% off for gcnet, axial and isa,
    // and start_runtime warns; the bound holds where the sums stay in float.
    if (cpu_bf16_products_accumulate_in_float()) {
      EXPECT_LE(dp, 1e-2) << "parameter gradients";
    }
    EXPECT_FALSE(torch::equal(bf16.y, fp32.y)) << "bf16 computed exactly as fp32: autocast did not engage";
  }
}

// Once a forward returns and its output is dropped, the block holds no tensor it allocated: a
// kept tensor of one forward would be freed by the next inside bench's peak-memory scope (and
// a training forward's would keep its graph). The first forward may fill per-size caches.
TEST_P(BlockTest, ARepeatedForwardHoldsNoTensorOnceItsOutputIsDropped) {
  torch::manual_seed(0);
  const AttentionBlock block = build_block(GetParam(), 16);
  block->eval();
  c10::InferenceMode inference;
  const at::Tensor x = torch::randn({1, 16, 9, 13});
  (void)block->forward(x);
  PeakMemory memory;
  (void)block->forward(x);
  if (GetParam() != "none") {
    EXPECT_GT(memory.peak_bytes(), 0) << "the scope saw no allocation";
  }
  EXPECT_EQ(memory.current_bytes(), 0);
}

TEST_P(BlockTest, SaveLoadRoundTrip) {
  torch::manual_seed(0);
  const AttentionBlock a = build_block(GetParam(), 16);
  torch::manual_seed(1);
  const AttentionBlock b = build_block(GetParam(), 16);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : a->parameters()) p.normal_();
  }
  std::stringstream stream;
  torch::serialize::OutputArchive out;
  a->save(out);
  out.save_to(stream);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  b->load(in);
  a->eval();
  b->eval();
  const at::Tensor x = torch::randn({1, 16, 9, 7});
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
}

TEST_P(BlockTest, FunctionalCoreMatchesFloat64Reference) {
  const auto it = core_checks().find(GetParam());
  ASSERT_NE(it, core_checks().end()) << "block " << GetParam() << " has no reference check";
  EXPECT_LT(it->second(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Registry, BlockTest, ::testing::ValuesIn(block_names()),
                         [](const auto& info) { return info.param; });

TEST(Registry, UnknownNameListsTheAcceptedOnes) {
  try {
    find_block("nonlokal", "config key 'model.attention.type' (x.yaml)");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("nonlokal"), std::string::npos);
    EXPECT_NE(m.find("model.attention.type"), std::string::npos);
    EXPECT_NE(m.find("none, nonlocal, ccnet"), std::string::npos);
  }
}

// --- ccnet: the criss-cross receptive field -----------------------------------------------

// Which input pixels influence output pixel (y, x): the support of the input gradient.
at::Tensor influence(CrissCross& block, int64_t h, int64_t w, int64_t y, int64_t x) {
  const at::Tensor input = torch::randn({1, 8, h, w}, torch::requires_grad());
  block->forward(input).select(2, y).select(2, x).sum().backward();
  return input.grad().abs().sum(1).squeeze(0) > 0;  // [h, w] bool
}

TEST(CrissCross, OnePassSeesOnlyRowAndColumn) {
  torch::manual_seed(0);
  CrissCross block(CrissCrossOptions(8).recurrence(1).reduction(2));
  block->gamma.data().fill_(1.0);
  const int64_t h = 13, w = 17, y = 4, x = 11;
  const at::Tensor reach = influence(block, h, w, y, x);
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      EXPECT_EQ(reach[i][j].item<bool>(), i == y || j == x) << "pixel " << i << "," << j;
    }
  }
}

TEST(CrissCross, TwoPassesSeeEveryPixel) {
  torch::manual_seed(0);
  CrissCross block(CrissCrossOptions(8).recurrence(2).reduction(2));
  block->gamma.data().fill_(1.0);
  const at::Tensor reach = influence(block, 13, 17, 4, 11);
  EXPECT_TRUE(reach.all().item<bool>());
}

// --- ccnet's fused kernels (criss_cross_kernel.h), run on the host -------------------------

// Output and the gradients of q, k and v of `attention` under the loss Σ out · g.
std::vector<at::Tensor> criss_cross_pass(at::Tensor (*attention)(const at::Tensor&, const at::Tensor&, const at::Tensor&),
                                         const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const at::Tensor& g) {
  std::vector<at::Tensor> in{q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_(),
                             v.detach().clone().requires_grad_()};
  const at::Tensor out = attention(in[0], in[1], in[2]);
  (out.to(g.scalar_type()) * g).sum().backward();
  return {out.detach(), in[0].grad(), in[1].grad(), in[2].grad()};
}

// Maps with odd sides, one row, one column and one pixel (whose criss-cross is itself alone).
const std::vector<std::vector<int64_t>> kCrissCrossMaps = {{2, 7, 9}, {1, 1, 6}, {1, 5, 1}, {1, 1, 1}, {3, 4, 3}};

TEST(CrissCrossFused, ForwardMatchesTheLoopReferenceAndTheUnfusedPathInFloat64OnOddMaps) {
  torch::manual_seed(11);
  for (const auto& m : kCrissCrossMaps) {
    const auto opts = at::TensorOptions(at::kDouble);
    const at::Tensor q = torch::randn({m[0], 3, m[1], m[2]}, opts), k = torch::randn({m[0], 3, m[1], m[2]}, opts);
    const at::Tensor v = torch::randn({m[0], 5, m[1], m[2]}, opts);
    const at::Tensor fused = functional::criss_cross_attention_fused(q, k, v);
    EXPECT_LT(relative_error(fused, criss_cross_reference(q, k, v)), 1e-12) << m[1] << "x" << m[2];
    EXPECT_LT(relative_error(fused, functional::criss_cross_attention(q, k, v)), 1e-12) << m[1] << "x" << m[2];
  }
}

// The backward (energies' gradient, then q's and k's as aggregations of it, v's as the
// transposed aggregation of the output's gradient) against autograd through the unfused path.
TEST(CrissCrossFused, GradientsOfQueriesKeysAndValuesMatchAutogradThroughTheUnfusedPathInFloat64) {
  torch::manual_seed(12);
  for (const auto& m : kCrissCrossMaps) {
    const auto opts = at::TensorOptions(at::kDouble);
    const at::Tensor q = torch::randn({m[0], 3, m[1], m[2]}, opts), k = torch::randn({m[0], 3, m[1], m[2]}, opts);
    const at::Tensor v = torch::randn({m[0], 5, m[1], m[2]}, opts), g = torch::randn({m[0], 5, m[1], m[2]}, opts);
    const auto fused = criss_cross_pass(functional::criss_cross_attention_fused, q, k, v, g);
    const auto unfused = criss_cross_pass(functional::criss_cross_attention, q, k, v, g);
    const char* what[] = {"output", "dq", "dk", "dv"};
    for (size_t i = 0; i < 4; ++i) {
      // A one-pixel map attends to itself alone: its weight is 1 whatever q and k, whose gradients are 0.
      if (unfused[i].norm().item<double>() == 0) {
        EXPECT_EQ(fused[i].norm().item<double>(), 0) << what[i] << " at " << m[1] << "x" << m[2];
      } else {
        EXPECT_LT(relative_error(fused[i], unfused[i]), 1e-12) << what[i] << " at " << m[1] << "x" << m[2];
      }
    }
  }
}

// Half and bfloat16 inputs accumulate in float: with 512 channels of query and key (scaled so
// the energies are of order 1), summing the energies in the inputs' type adds up to √512 · u
// of error to each (u = 2^-8 in bfloat16: seen as 3.3% on the output with the sum kept in
// bfloat16); what float accumulation leaves is the roundoff of the inputs and of the output,
// a few u: below 5u, 2% in bfloat16 and 0.25% in half (u = 2^-11), forward and gradients alike.
TEST(CrissCrossFused, HalfAndBfloat16InputsAccumulateInFloatToWithinAFewRoundoffsOfFloat64) {
  torch::manual_seed(13);
  const at::Tensor q = torch::randn({2, 512, 5, 7}, at::kDouble) / std::sqrt(22.6);
  const at::Tensor k = torch::randn({2, 512, 5, 7}, at::kDouble) / std::sqrt(22.6);
  const at::Tensor v = torch::randn({2, 6, 5, 7}, at::kDouble), g = torch::randn({2, 6, 5, 7}, at::kDouble);
  const auto exact = criss_cross_pass(functional::criss_cross_attention, q, k, v, g);
  for (const auto& [type, bound] : {std::pair{at::kBFloat16, 2e-2}, std::pair{at::kHalf, 2.5e-3}}) {
    const auto low = criss_cross_pass(functional::criss_cross_attention_fused, q.to(type), k.to(type), v.to(type),
                                      g.to(type));
    const char* what[] = {"output", "dq", "dk", "dv"};
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(low[i].scalar_type(), type) << what[i];
      EXPECT_LT(relative_error(low[i], exact[i]), bound) << what[i] << " in " << type;
    }
  }
}

TEST(CrissCrossFused, BlockGivesTheSameOutputAndGradientsWithTheFusedAndTheUnfusedKernel) {
  torch::manual_seed(14);
  CrissCross fused(CrissCrossOptions(16).kernel("fused")), unfused(CrissCrossOptions(16).kernel("unfused"));
  fused->to(at::kDouble);
  unfused->to(at::kDouble);
  {
    torch::NoGradGuard no_grad;
    fused->gamma.fill_(0.7);  // not the identity start
    const auto from = fused->parameters(), to = unfused->parameters();
    for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  }
  const at::Tensor x = torch::randn({2, 16, 7, 5}, at::kDouble);
  auto run = [&](CrissCross& block) {
    const at::Tensor in = x.clone().requires_grad_();
    (block->forward(in).pow(2)).sum().backward();
    std::vector<at::Tensor> out{block->forward(x).detach(), in.grad()};
    for (const auto& p : block->parameters()) out.push_back(p.grad());
    return out;
  };
  const auto a = run(fused), b = run(unfused);
  ASSERT_EQ(a.size(), b.size());
  // Against the larger of the norm and 1: the key bias's gradient is 0 in exact arithmetic (it
  // adds q · bias to every energy of a pixel, which the softmax cancels), so both are roundoff.
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(b[i].norm().item<double>(), 1.0);
    EXPECT_LT((a[i] - b[i]).norm().item<double>() / scale, 1e-12) << "tensor " << i;
  }
}

TEST(CrissCrossFused, AnUnknownKernelIsRefusedNamingTheKey) {
  try {
    CrissCross block(CrissCrossOptions(8).kernel("fast"));
    FAIL() << "kernel 'fast' was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("ccnet: kernel must be unfused or fused, got 'fast'"),
              std::string::npos)
        << e.what_without_backtrace();
  }
}

// Two recurrent passes against speedinghzl/CCNet's criss-cross module with the same weights
// (fixture recorded by tools/reference/ccnet.py in float64).
TEST(CrissCross, MatchesTheReferenceImplementation) {
  const test::Fixture f = test::load_fixture("ccnet");
  CrissCross block(CrissCrossOptions(16).recurrence(2));
  block->to(torch::kDouble);
  test::copy_weights(*block, f,
                     {{"gamma", "gamma"}, {"query.weight", "query_conv.weight"}, {"query.bias", "query_conv.bias"},
                      {"key.weight", "key_conv.weight"}, {"key.bias", "key_conv.bias"},
                      {"value.weight", "value_conv.weight"}, {"value.bias", "value_conv.bias"}});
  EXPECT_LT(test::max_relative_error(block->forward(f["x"]), f["y"]), 1e-12);
}

TEST(CrissCross, StartsAsIdentity) {
  CrissCross block(CrissCrossOptions(8));
  const at::Tensor x = torch::randn({1, 8, 5, 6});
  EXPECT_TRUE(torch::equal(block->forward(x), x));
}

TEST(CrissCross, MultiplyAddsMatchHandCount) {
  // C=64, D=8, H=5, W=7, B=2, R=2: per pass N·C·(2D+C) + N·(H+W)·(D+C).
  CrissCross block(CrissCrossOptions(64).recurrence(2).reduction(8));
  const int64_t n = 35;
  EXPECT_EQ(block->macs({2, 64, 5, 7}), 2 * (2 * n * 64 * (16 + 64) + 2 * n * 12 * (8 + 64)));
}

TEST(NonLocal, MultiplyAddsMatchHandCount) {
  // C=64, inner 32, N=35, B=1: four 1×1 projections N·C·32 and two N²·32 products.
  NonLocal block(NonLocalOptions(64).reduction(2));
  EXPECT_EQ(block->macs({1, 64, 5, 7}), 4 * 35 * 64 * 32 + 2 * 35 * 35 * 32);
}

TEST(NonLocal, StartsAsIdentity) {
  NonLocal block(NonLocalOptions(8));
  block->eval();
  const at::Tensor x = torch::randn({1, 8, 5, 6});
  EXPECT_TRUE(torch::allclose(block->forward(x), x));
}

}  // namespace
}  // namespace attnseg
