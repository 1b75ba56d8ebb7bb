// Permutohedral attention: the lattice against the authors' code (fixture), against the same
// lattice written as a dense kernel matrix, and against dense Gaussian-kernel attention (which
// it approximates); its gradient against central differences; its work linear in tokens; its
// tensor form (what runs on CUDA) against the CPU kernel.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <vector>

#include "attention/lattice_hash.h"
#include "attention/permutohedral.h"
#include "fixture.h"
#include "permutohedral_reference.h"

namespace attnseg {
namespace {

using test::max_relative_error;
using test::permutohedral_reference;

double relative_error(const at::Tensor& out, const at::Tensor& ref) {
  return ((out.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
}

// --- float64 references -----------------------------------------------------------------

// Gaussian-kernel attention, one query at a time: Σ_j exp(−‖q_i − k_j‖²/2σ²) v_j / Σ_j (…).
at::Tensor gaussian_attention_reference(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, double sigma) {
  const at::Tensor qd = q.to(at::kDouble).flatten(2), kd = k.to(at::kDouble).flatten(2),
                   vd = v.to(at::kDouble).flatten(2);
  const int64_t B = qd.size(0), D = qd.size(1), nq = qd.size(2), nk = kd.size(2), C = vd.size(1);
  const auto qa = qd.accessor<double, 3>(), ka = kd.accessor<double, 3>(),
             va = vd.accessor<double, 3>();
  at::Tensor out = at::zeros({B, C, nq}, at::kDouble);
  auto oa = out.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < nq; ++i) {
      double z = 0;
      for (int64_t j = 0; j < nk; ++j) {
        double dist = 0;
        for (int64_t c = 0; c < D; ++c)
          dist += (qa[b][c][i] - ka[b][c][j]) * (qa[b][c][i] - ka[b][c][j]);
        const double w = std::exp(-dist / (2 * sigma * sigma));
        z += w;
        for (int64_t c = 0; c < C; ++c) oa[b][c][i] += w * va[b][c][j];
      }
      for (int64_t c = 0; c < C; ++c) oa[b][c][i] /= z;
    }
  }
  return out;
}

// --- against the authors' code --------------------------------------------------------------

// PL_with_grad_torch_HT.PermutohedralLattice on 40 points of 4-d positions filtering 3
// channels (self-filtering, unnormalised, as PAM calls it): output and both gradients.
TEST(Permutohedral, LatticeMatchesTheReferenceForwardAndBackward) {
  const test::Fixture f = test::load_fixture("permutohedral");
  const at::Tensor feat = f["lattice.feat"].clone().requires_grad_(),
                   desc = f["lattice.desc"].clone().requires_grad_();
  const at::Tensor out =
      functional::permutohedral_attention(feat, feat, desc, 1.0, /*normalize=*/false);
  EXPECT_LT(max_relative_error(out, f["lattice.out"]), 1e-9);
  (out * f["lattice.grad_out"]).sum().backward();
  EXPECT_LT(max_relative_error(feat.grad(), f["lattice.grad_feat"]), 1e-9);
  EXPECT_LT(max_relative_error(desc.grad(), f["lattice.grad_desc"]), 1e-9);
  // With a homogeneous channel of ones through the reference lattice: Σ_j K_ij v_j / Σ_j K_ij.
  torch::NoGradGuard no_grad;
  EXPECT_LT(max_relative_error(functional::permutohedral_attention(feat, feat, desc),
                               f["lattice.out_normalized"]),
            1e-9);
}

// The whole PAM (C=8, two splits of 4-d positions) on a 5×7 map, sample by sample.
TEST(Permutohedral, BlockMatchesTheReferenceModule) {
  const test::Fixture f = test::load_fixture("permutohedral");
  for (const bool normalize : {false, true}) {
    Permutohedral block(PermutohedralOptions(8).filter_dim(4).heads(2).normalize(normalize));
    block->to(torch::kDouble);
    test::copy_weights(*block, f,
                       {{"feature.weight", "conv_feat.weight"},
                        {"feature.bias", "conv_feat.bias"},
                        {"descriptor.weight", "conv_desc.weight"},
                        {"descriptor.bias", "conv_desc.bias"},
                        {"coord_scale", "scaling_spatial"}});
    EXPECT_LT(max_relative_error(block->forward(f["x"]), f[normalize ? "y_normalized" : "y"]), 1e-9)
        << normalize;
  }
}

// --- the functional core ---------------------------------------------------------------------

TEST(Permutohedral, CoreEqualsTheLatticeWrittenAsADenseKernelMatrix) {
  torch::manual_seed(0);
  const at::Tensor p = 1.5 * torch::randn({2, 3, 5, 7}, torch::kDouble),
                   v = torch::randn({2, 4, 5, 7}, torch::kDouble);
  // Queries at other positions, and fewer of them.
  const at::Tensor q = 1.5 * torch::randn({2, 3, 3, 9}, torch::kDouble);
  for (const bool normalize : {false, true}) {
    EXPECT_LT(relative_error(functional::permutohedral_attention(p, p, v, 1.0, normalize),
                             permutohedral_reference(p, p, v, 1.0, normalize)),
              1e-12);
    EXPECT_LT(relative_error(functional::permutohedral_attention(q, p, v, 0.7, normalize),
                             permutohedral_reference(q, p, v, 0.7, normalize)),
              1e-12);
  }
  // float32 values (the lattice itself is always built in float64).
  EXPECT_LT(relative_error(functional::permutohedral_attention(
                               q.to(torch::kFloat), p.to(torch::kFloat), v.to(torch::kFloat)),
                           permutohedral_reference(q, p, v, 1.0, true)),
            1e-6);
}

// --- what makes it real: a linear-time approximation of Gaussian-kernel attention -----------

// The bounds below are not the lattice's own measured errors. The lattice is scaled (by
// (d+1)·√(2/3)/σ) so that splatting, the d+1 blurs and slicing together stand in for a
// Gaussian of width σ (in one dimension their variances add up to σ² exactly: blur h²,
// splat and slice h²/6 each, at vertex spacing h = σ·√3/2); its kernel's shape is another (piecewise linear, and truncated
// where the blur meets unoccupied vertices: sparse random points in higher d sit in simplices
// of their own). Whatever that costs, an approximation of attention with width σ must be
// closer to it than exact attention whose variance is off by a factor of two (width σ/√2 or
// σ·√2) is; otherwise it is no better a σ-filter than the wrong-width exact one. Both
// yardsticks are computed densely in float64 from the data alone, for each case.
double distance_to_wrong_width(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& dense, double sigma) {
  return std::min(relative_error(gaussian_attention_reference(q, k, v, sigma / std::sqrt(2.0)), dense),
                  relative_error(gaussian_attention_reference(q, k, v, sigma * std::sqrt(2.0)), dense));
}

// Self-filtering (the block's use), N = 50..200 positions ~ N(0, I) in d = 2..4, three seeds.
TEST(Permutohedral, ApproximatesDenseGaussianAttentionBetterThanAWrongWidth) {
  for (const int64_t d : {2, 3, 4}) {
    for (const int64_t n : {50, 100, 200}) {
      for (int seed = 0; seed < 3; ++seed) {
        torch::manual_seed(seed);
        const at::Tensor p = torch::randn({1, d, n}, torch::kDouble),
                         v = torch::randn({1, 3, n}, torch::kDouble);
        const at::Tensor dense = gaussian_attention_reference(p, p, v, 1.0);
        EXPECT_LT(relative_error(functional::permutohedral_attention(p, p, v), dense),
                  distance_to_wrong_width(p, p, v, dense, 1.0))
            << "d=" << d << " N=" << n << " seed " << seed;
      }
    }
  }
}

// Queries other than the keys (each key moved by N(0, 0.3²)), with the same yardstick.
TEST(Permutohedral, ApproximatesDenseGaussianAttentionForOtherQueriesBetterThanAWrongWidth) {
  for (const int64_t d : {2, 3, 4}) {
    for (const int64_t n : {50, 100, 200}) {
      for (int seed = 0; seed < 3; ++seed) {
        torch::manual_seed(seed);
        const at::Tensor k = torch::randn({1, d, n}, torch::kDouble),
                         v = torch::randn({1, 3, n}, torch::kDouble);
        const at::Tensor q = k + 0.3 * torch::randn({1, d, n}, torch::kDouble);
        const at::Tensor dense = gaussian_attention_reference(q, k, v, 1.0);
        EXPECT_LT(relative_error(functional::permutohedral_attention(q, k, v), dense),
                  distance_to_wrong_width(q, k, v, dense, 1.0))
            << "d=" << d << " N=" << n << " seed " << seed;
      }
    }
  }
}

// Occupied vertices, hash probes and products with values, at N and 4N points from the same
// distribution: none grows faster than N (dense attention's products would grow 16×).
TEST(Permutohedral, WorkGrowsLinearlyWithTokens) {
  for (const int64_t d : {4, 8}) {
    torch::manual_seed(0);
    const at::Tensor small = 2 * torch::randn({1, d, 1000}), large = 2 * torch::randn({1, d, 4000});
    const auto a = functional::permutohedral_work(small, small, 16),
               b = functional::permutohedral_work(large, large, 16);
    EXPECT_LE(a.vertices, (d + 1) * 1000);
    EXPECT_LE(b.vertices, 4 * a.vertices) << "d=" << d;
    EXPECT_LE(b.products, 4 * a.products) << "d=" << d;
    EXPECT_LE(b.lookups, 4 * a.lookups) << "d=" << d;
    // Linear probing in a table at most half full: 2.5 slots per miss on average, fewer per hit.
    EXPECT_LT(double(a.probes) / double(a.lookups), 2.5);
    EXPECT_LT(double(b.probes) / double(b.lookups), 2.5);
  }
}

// --- the gradient -------------------------------------------------------------------------------

// Central differences of L = Σ out·w in float64 for query positions, key positions and values,
// normalised and not, and for positions that are both queries and keys (the shared tensor
// collects both parts of the gradient).
TEST(Permutohedral, GradientMatchesCentralDifferences) {
  torch::manual_seed(3);
  const double h = 1e-6, sigma = 0.8;
  for (const bool normalize : {false, true}) {
    for (const bool shared : {false, true}) {
      std::vector<at::Tensor> inputs{torch::randn({1, 2, 2, 3}, torch::kDouble),
                                     torch::randn({1, 2, 7}, torch::kDouble),
                                     torch::randn({1, 2, 7}, torch::kDouble)};
      const at::Tensor w = torch::randn({1, 2, shared ? 7 : 6}, torch::kDouble);
      auto loss = [&](const std::vector<at::Tensor>& in) {
        const at::Tensor out = functional::permutohedral_attention(shared ? in[1] : in[0], in[1],
                                                                   in[2], sigma, normalize);
        return (out.flatten(2) * w).sum();
      };
      for (auto& t : inputs) t.requires_grad_();
      loss(inputs).backward();
      for (size_t which = shared ? 1 : 0; which < inputs.size(); ++which) {
        at::Tensor numeric = at::zeros_like(inputs[which]);
        for (int64_t e = 0; e < numeric.numel(); ++e) {
          std::vector<at::Tensor> plus, minus;
          for (const auto& t : inputs) {
            plus.push_back(t.detach().clone());
            minus.push_back(t.detach().clone());
          }
          plus[which].view(-1)[e] += h;
          minus[which].view(-1)[e] -= h;
          numeric.view(-1)[e] = (loss(plus) - loss(minus)).item<double>() / (2 * h);
        }
        EXPECT_GT(numeric.abs().max().item<double>(), 1e-3)
            << "input " << which << " has no effect";
        EXPECT_LT(max_relative_error(inputs[which].grad(), numeric), 1e-6)
            << "input " << which << " normalize " << normalize << " shared " << shared;
      }
    }
  }
}

// The gradient is that of the lattice (piecewise linear in positions through the barycentric
// weights), so it only approximates the Gaussian's. Measured on 50 and 200 points in d = 2
// (two seeds): position gradients at cosine 0.886..0.933 to the dense attention's, value
// gradients within 0.098..0.119 relative error.
TEST(Permutohedral, GradientApproximatesTheGaussianGradient) {
  for (const int64_t n : {50, 200}) {
    for (int seed = 0; seed < 2; ++seed) {
      torch::manual_seed(seed);
      const at::Tensor p0 = torch::randn({1, 2, n}, torch::kDouble),
                       v0 = torch::randn({1, 3, n}, torch::kDouble);
      const at::Tensor g = torch::randn({1, 3, n}, torch::kDouble);
      const at::Tensor p = p0.clone().requires_grad_(), v = v0.clone().requires_grad_();
      (functional::permutohedral_attention(p, p, v) * g).sum().backward();
      const at::Tensor pd = p0.clone().requires_grad_(), vd = v0.clone().requires_grad_();
      const at::Tensor dist = (pd.unsqueeze(3) - pd.unsqueeze(2)).pow(2).sum(1);  // [1, N, N]
      const at::Tensor kernel = at::exp(-dist / 2);
      ((at::matmul(vd, kernel.transpose(1, 2)) / kernel.sum(2).unsqueeze(1)) * g).sum().backward();
      const double cosine = (p.grad() * pd.grad()).sum().item<double>() /
                            (p.grad().norm() * pd.grad().norm()).item<double>();
      EXPECT_GT(cosine, 0.85) << "N=" << n << " seed " << seed;
      EXPECT_LT(relative_error(v.grad(), vd.grad()), 0.13) << "N=" << n << " seed " << seed;
    }
  }
}

// A query whose simplex no key's blur reaches gets 0 (no 0/0), with a finite gradient.
TEST(Permutohedral, QueriesOutOfReachGetZero) {
  torch::manual_seed(0);
  const at::Tensor k = torch::randn({1, 3, 20}, torch::kDouble).requires_grad_(),
                   v = torch::randn({1, 2, 20}, torch::kDouble);
  const at::Tensor q = torch::cat(
      {torch::randn({1, 3, 1}, torch::kDouble), torch::full({1, 3, 1}, 50.0, torch::kDouble)}, 2);
  const at::Tensor out = functional::permutohedral_attention(q, k, v);
  EXPECT_GT(out.select(2, 0).abs().sum().item<double>(), 0);
  EXPECT_TRUE(torch::equal(out.select(2, 1), torch::zeros({1, 2}, torch::kDouble)));
  out.sum().backward();
  EXPECT_TRUE(torch::isfinite(k.grad()).all().item<bool>());
}

// --- cost -----------------------------------------------------------------------------------

TEST(Permutohedral, MultiplyAddsMatchHandCount) {
  // C=16, 2 heads of d=8 (9 vertices per simplex), 8+1 filtered channels per head, N=35, B=2:
  // coordinate scale 2N, extractor N·(C+2)·16 per sample, descriptor N·C·C per sample, and per
  // sample and head: splat and slice 2·N·9·9, blur 2·9·(9N vertices at most)·9.
  Permutohedral block(PermutohedralOptions(16));
  const int64_t n = 35, lattice = 2 * n * 9 * 9 + 2 * 9 * (9 * n) * 9;
  EXPECT_EQ(block->macs({2, 16, 5, 7}),
            2 * n + 2 * n * 18 * 16 + 2 * n * 16 * 16 + 2 * 2 * lattice);
  // With a query extractor of its own, queries embed their own simplices too (up to 18N vertices).
  Permutohedral cross(PermutohedralOptions(16).shared_qk(false).normalize(false));
  const int64_t cross_lattice = 2 * n * 9 * 8 + 2 * 9 * (18 * n) * 8;
  EXPECT_EQ(cross->macs({1, 16, 5, 7}), 2 * n + 2 * n * 18 * 16 + n * 16 * 16 + 2 * cross_lattice);
  // The count is the work done when every position has vertices of its own (far apart)...
  const at::Tensor far = 100 * torch::randn({1, 8, 5, 7});
  const auto work = functional::permutohedral_work(far, far, 9);
  EXPECT_EQ(work.vertices, 9 * n);
  EXPECT_EQ(work.products, lattice);
  // ...and bounds it when positions share vertices.
  const at::Tensor near = 0.3 * torch::randn({1, 8, 5, 7});
  EXPECT_LT(functional::permutohedral_work(near, near, 9).products, lattice);
}

// --- the tensor form (the lattice on CUDA) against the CPU kernel -----------------------------

// B=2, 7×5 keys at 0.5·N(0, I) (σ = 0.8: keys share vertices, the blur reaches every query),
// C=3 values; queries the keys themselves, or drawn apart from them. Last, keys on the integer
// grid {−1, 0, 1}^4, whose elevated residuals tie, so the ranks' tie order matters.
struct LatticeCase {
  at::Tensor q, k, v;
  std::string name;
};

std::vector<LatticeCase> lattice_cases() {
  std::vector<LatticeCase> cases;
  for (const int64_t d : {3, 5}) {
    for (const bool shared : {true, false}) {
      torch::manual_seed(d);
      const at::Tensor k = 0.5 * torch::randn({2, d, 7, 5}, torch::kDouble);
      const at::Tensor q = shared ? k : 0.5 * torch::randn({2, d, 7, 5}, torch::kDouble);
      std::ostringstream name;
      name << "D=" << d << (shared ? " q=k" : " q apart");
      cases.push_back({q, k, torch::randn({2, 3, 7, 5}, torch::kDouble), name.str()});
    }
  }
  const at::Tensor grid = torch::randint(-1, 2, {2, 4, 7, 5}).to(torch::kDouble);
  cases.push_back(
      {grid, grid, torch::randn({2, 3, 7, 5}, torch::kDouble), "D=4 integer grid, q=k"});
  return cases;
}

constexpr double kTensorFormStd = 0.8;

using Attention = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, bool);

// The tensor form with its vertex table from sorts and from the hash table's kernels.
std::vector<std::pair<std::string, Attention>> tensor_forms() {
  return {{"sorted table", functional::permutohedral_attention_tensor},
          {"hashed table", functional::permutohedral_attention_hashed}};
}

TEST(PermutohedralTensorForm, ForwardEqualsTheCpuKernelInFloat64) {
  for (const LatticeCase& c : lattice_cases()) {
    for (const bool normalize : {false, true}) {
      const at::Tensor cpu =
          functional::permutohedral_attention(c.q, c.k, c.v, kTensorFormStd, normalize);
      // Every query reached, so the comparison covers the blur everywhere.
      if (!normalize) {
        ASSERT_TRUE((cpu.abs().sum(1) > 0).all().item<bool>()) << c.name;
      }
      for (const auto& [form, attention] : tensor_forms()) {
        const at::Tensor tensor = attention(c.q, c.k, c.v, kTensorFormStd, normalize);
        EXPECT_LT(max_relative_error(tensor, cpu), 1e-10) << c.name << " normalize " << normalize << " " << form;
      }
    }
  }
}

// Autograd through the tensor form's barycentric weights against the CPU kernel's hand-written
// backward, for L = Σ out·g.
TEST(PermutohedralTensorForm, GradientEqualsTheCpuKernelsHandWrittenBackward) {
  for (const LatticeCase& c : lattice_cases()) {
    const bool shared = c.q.is_same(c.k);
    const at::Tensor g = torch::randn({2, 3, 7, 5}, torch::kDouble);
    for (const bool normalize : {false, true}) {
      auto gradients = [&](auto attention) {
        const at::Tensor k = c.k.clone().requires_grad_(), v = c.v.clone().requires_grad_();
        const at::Tensor q = shared ? k : c.q.clone().requires_grad_();
        (attention(q, k, v, kTensorFormStd, normalize) * g).sum().backward();
        return std::vector<at::Tensor>{q.grad(), k.grad(), v.grad()};
      };
      const auto cpu = gradients(functional::permutohedral_attention);
      for (const auto& [form, attention] : tensor_forms()) {
        const auto tensor = gradients(attention);
        const char* what[] = {"dq", "dk", "dv"};
        for (size_t i = shared ? 1 : 0; i < cpu.size(); ++i) {
          ASSERT_GT(cpu[i].abs().max().item<double>(), 0) << c.name << " " << what[i];
          EXPECT_LT(max_relative_error(tensor[i], cpu[i]), 1e-9)
              << c.name << " normalize " << normalize << " " << what[i] << " " << form;
        }
      }
    }
  }
}

// Sample 1's positions are sample 0's moved by N(0, 0.05²), its values others: on one shared
// lattice each would blur into the other's vertices.
TEST(PermutohedralTensorForm, FiltersEachSampleOnItsOwnLattice) {
  torch::manual_seed(0);
  const at::Tensor k0 = 0.5 * torch::randn({1, 3, 7, 5}, torch::kDouble);
  const at::Tensor k1 = k0 + 0.05 * torch::randn({1, 3, 7, 5}, torch::kDouble);
  const at::Tensor q0 = 0.5 * torch::randn({1, 3, 5, 3}, torch::kDouble);
  const at::Tensor q1 = q0 + 0.05 * torch::randn({1, 3, 5, 3}, torch::kDouble);
  const at::Tensor v0 = torch::randn({1, 3, 7, 5}, torch::kDouble),
                   v1 = torch::randn({1, 3, 7, 5}, torch::kDouble);
  const at::Tensor k = torch::cat({k0, k1}), q = torch::cat({q0, q1}), v = torch::cat({v0, v1});
  for (const auto& [form, attention] : tensor_forms()) {
    for (const bool shared : {true, false}) {
      const at::Tensor both = attention(shared ? k : q, k, v, kTensorFormStd, true);
      const at::Tensor alone0 = attention(shared ? k0 : q0, k0, v0, kTensorFormStd, true);
      const at::Tensor alone1 = attention(shared ? k1 : q1, k1, v1, kTensorFormStd, true);
      EXPECT_LT(max_relative_error(both.narrow(0, 0, 1), alone0), 1e-12) << "shared " << shared << " " << form;
      EXPECT_LT(max_relative_error(both.narrow(0, 1, 1), alone1), 1e-12) << "shared " << shared << " " << form;
    }
  }
}

// Sample 0: 35 keys at 6 distinct positions and 15 queries at 4 more; sample 1: all distinct.
// Far apart (100σ), each distinct position occupies d+1 vertices of its own; the table holds
// exactly the CPU hash table's vertices, queries' included, counted per sample.
TEST(PermutohedralTensorForm, BuildsTheCpuKernelsVerticesAtMostDPlusOnePerDistinctPosition) {
  torch::manual_seed(0);
  const int64_t d = 4;
  const at::Tensor repeat_k = torch::randint(6, {35}, torch::kLong),
                   repeat_q = torch::randint(4, {15}, torch::kLong);
  const at::Tensor k = torch::cat(
      {(100 * torch::randn({1, d, 6})).index_select(2, repeat_k), 100 * torch::randn({1, d, 35})});
  const at::Tensor q = torch::cat(
      {(100 * torch::randn({1, d, 4})).index_select(2, repeat_q), 100 * torch::randn({1, d, 15})});
  for (const bool shared : {true, false}) {
    const at::Tensor rows = shared ? functional::permutohedral_vertices(k, k)
                                   : functional::permutohedral_vertices(q, k);
    EXPECT_EQ(rows.size(0), shared ? functional::permutohedral_work(k, k, 1).vertices
                                   : functional::permutohedral_work(q, k, 1).vertices);
    for (int64_t b = 0; b < 2; ++b) {
      const at::Tensor points = shared ? k[b] : torch::cat({k[b], q[b]}, 1);
      const int64_t distinct = std::get<0>(torch::unique_dim(points.t(), 0)).size(0);
      EXPECT_EQ(distinct, b == 0 ? (shared ? 6 : 10) : (shared ? 35 : 50));
      EXPECT_LE((rows.select(1, 0) == b).sum().item<int64_t>(), (d + 1) * distinct)
          << "sample " << b;
    }
  }
}

// bf16 and half inputs come back in their dtype, filtered exactly as their float values are
// (so in float), by the CPU kernel (which dispatches float and double only) and the tensor form.
TEST(PermutohedralTensorForm, ReducedPrecisionIsFilteredInFloatAndReturnedInItsDtype) {
  const LatticeCase c = lattice_cases()[1];  // D=3, queries apart from the keys
  for (const auto type : {torch::kBFloat16, torch::kHalf}) {
    const at::Tensor q = c.q.to(type), k = c.k.to(type), v = c.v.to(type);
    for (const auto attention : {functional::permutohedral_attention, functional::permutohedral_attention_tensor,
                                 functional::permutohedral_attention_hashed}) {
      const at::Tensor out = attention(q, k, v, kTensorFormStd, true);
      EXPECT_EQ(out.scalar_type(), type);
      EXPECT_TRUE(torch::equal(out, attention(q.to(torch::kFloat), k.to(torch::kFloat),
                                              v.to(torch::kFloat), kTensorFormStd, true)
                                        .to(type)))
          << type;
    }
  }
}

// --- beyond the harness ---------------------------------------------------------------------

// No buffers and no mode-dependent behaviour: training and eval forwards agree, and a training
// step's backward leaves finite gradients.
TEST(Permutohedral, TrainingModeMatchesEvalMode) {
  torch::manual_seed(0);
  Permutohedral block(PermutohedralOptions(16));
  EXPECT_TRUE(block->buffers().empty());
  const at::Tensor x = torch::randn({2, 16, 9, 11}, torch::requires_grad());
  block->train();
  const at::Tensor y = block->forward(x);
  y.pow(2).mean().backward();
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  block->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(y.detach(), block->forward(x)));
}

TEST(Permutohedral, RejectsHeadsThatDoNotDivideChannels) {
  EXPECT_THROW(Permutohedral(PermutohedralOptions(16).heads(3)), c10::Error);
  EXPECT_THROW(Permutohedral(PermutohedralOptions(16).kernel_std(0)), c10::Error);
}

// --- the hash table's kernels (lattice_hash_kernel.h), run on the host ----------------------

// 6000 rows of two samples drawn from 400 distinct ones, negative coordinates among them, so
// probes collide and many threads insert the same row at once.
at::Tensor repeated_rows(int64_t d) {
  torch::manual_seed(21);
  const at::Tensor distinct = at::cat({torch::randint(2, {400, 1}, torch::kLong), torch::randint(-9, 10, {400, d}, torch::kLong)}, 1);
  return distinct.index_select(0, torch::randint(400, {6000}, torch::kLong));
}

void expect_table_of(const at::Tensor& rows, const lattice_hash::Table& table, const std::string& what) {
  const at::Tensor expected = std::get<0>(torch::unique_dim(rows, 0));
  ASSERT_EQ(table.rows.size(0), expected.size(0)) << what;
  EXPECT_TRUE(torch::equal(std::get<0>(torch::unique_dim(table.rows, 0)), expected)) << what;
  EXPECT_TRUE(torch::equal(table.rows.index_select(0, table.ids), rows)) << what;
}

TEST(LatticeHash, TableHoldsEachDistinctRowOnceAndMapsEveryRowToItsOwn) {
  for (const int64_t d : {1, 4, 8}) {
    const at::Tensor rows = repeated_rows(d);
    expect_table_of(rows, lattice_hash::build(rows), "d=" + std::to_string(d));
  }
}

// A table all but full: long probe chains, so rows that differ in one column alone (the sample
// among them) meet in a slot's comparison, and every insert and lookup walks past others.
TEST(LatticeHash, AnAlmostFullTableStillSeparatesRowsThatDifferInOneColumn) {
  // 2 samples × 31 coordinates = 62 distinct rows, 63 rows, in 64 slots.
  const at::Tensor sample = torch::arange(2, torch::kLong).repeat_interleave(31).view({62, 1});
  const at::Tensor coord = torch::arange(-15, 16, torch::kLong).repeat(2).view({62, 1});
  const at::Tensor rows = at::cat({at::cat({sample, coord}, 1), torch::tensor({{1, 4}}, torch::kLong)});
  const lattice_hash::Table table = lattice_hash::build(rows, 64);
  expect_table_of(rows, table, "64 slots");
  EXPECT_EQ(table.rows.size(0), 62);
  EXPECT_THROW(lattice_hash::build(rows, 63), c10::Error) << "not a power of two";
  EXPECT_THROW(lattice_hash::build(rows, 32), c10::Error) << "fewer slots than rows";
}

// Each vertex's neighbour along each direction and side is the row one step away (±d in that
// coordinate, ∓1 in the others, the sample kept) when the table holds it, else M; column M is M.
TEST(LatticeHash, NeighboursAreTheRowsOneStepAwayOrMWhereTheTableLacksThem) {
  const int64_t d = 3;
  // A dense patch, so that most steps land on a row of the table and some do not.
  const at::Tensor rows = at::cat({torch::zeros({2000, 1}, torch::kLong), torch::randint(-4, 5, {2000, d}, torch::kLong)}, 1);
  const lattice_hash::Table table = lattice_hash::build(rows);
  const int64_t m = table.rows.size(0);
  std::map<std::vector<int64_t>, int64_t> index;
  for (int64_t i = 0; i < m; ++i) {
    const at::Tensor r = table.rows[i].contiguous();
    index[std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + d + 1)] = i;
  }
  ASSERT_EQ(table.neighbours.size(), static_cast<size_t>(d + 1));
  int64_t found = 0, missing = 0;
  for (int64_t dir = 0; dir <= d; ++dir) {
    const at::Tensor nb = table.neighbours[dir];
    ASSERT_EQ(nb.sizes(), (at::IntArrayRef{2, m + 1}));
    for (int64_t side = 0; side < 2; ++side) {
      EXPECT_EQ(nb[side][m].item<int64_t>(), m);
      for (int64_t i = 0; i < m; ++i) {
        std::vector<int64_t> key(d + 1);
        for (int64_t j = 0; j <= d; ++j) {
          const int64_t along = j == 0 ? 0 : (j - 1 == dir ? d : -1);
          key[j] = table.rows[i][j].item<int64_t>() + (side == 0 ? along : -along);
        }
        const auto it = index.find(key);
        const int64_t expected = it == index.end() ? m : it->second;
        (expected == m ? missing : found)++;
        ASSERT_EQ(nb[side][i].item<int64_t>(), expected) << "vertex " << i << " direction " << dir << " side " << side;
      }
    }
  }
  EXPECT_GT(found, 0);
  EXPECT_GT(missing, 0);
}

TEST(LatticeHash, AnEmptyTableHasNoVerticesAndEveryNeighbourColumnIsM) {
  const lattice_hash::Table table = lattice_hash::build(torch::zeros({0, 4}, torch::kLong));
  EXPECT_EQ(table.rows.size(0), 0);
  EXPECT_EQ(table.ids.numel(), 0);
  ASSERT_EQ(table.neighbours.size(), 4u);
  for (const at::Tensor& nb : table.neighbours) EXPECT_TRUE(torch::equal(nb, torch::zeros({2, 1}, torch::kLong)));
}

}  // namespace
}  // namespace attnseg
