#include "attention/permutohedral.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <cmath>
#include <tuple>

#include "attention/kernel_support.h"
#include "attention/lattice_hash.h"
#include "core/device.h"

namespace attnseg {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Adams et al.'s elevation scale: with it, splat + blur + slice approximates a Gaussian of
// unit standard deviation in the input positions.
double lattice_scale(int64_t d) {
  return std::sqrt(2.0 / 3.0) * static_cast<double>(d + 1);
}
// Neighbour weight of the blur along one direction (centre weight 1), as the reference.
constexpr double kBlurSide = 0.5;
// The reference's (CRF-as-RNN's) output scale for that blur, 1/(1 + 2^−d): it matters only
// without normalisation.
double slice_scale(int64_t d) {
  return 1.0 / (1.0 + std::pow(2.0, -static_cast<double>(d)));
}
// Elevated coordinates are hashed as int32: positions (over σ) beyond this are rejected.
constexpr double kMaxElevated = 1e9;
constexpr int64_t kPointGrain = 64, kVertexGrain = 256, kChannelGrain = 16;

// Per input coordinate j, the elevation's scale: column j+1 of Adams' orthogonal basis of
// the plane Σx = 0 is (1, …, 1, −(j+1), 0, …)/√((j+1)(j+2)).
std::vector<double> elevation_scale(int64_t d, double kernel_std) {
  std::vector<double> scale(d);
  for (int64_t j = 1; j <= d; ++j)
    scale[j - 1] = lattice_scale(d) / std::sqrt(double(j * (j + 1))) / kernel_std;
  return scale;
}

// For n points: the d+1 vertices of each one's enclosing simplex, its barycentric weights,
// and the rank of each elevated coordinate (which decides how the weights move with it).
struct Simplices {
  int64_t n = 0;
  std::vector<int32_t> vertex, rank;  // n × (d+1)
  std::vector<double> weight;         // n × (d+1)
};

// The occupied vertices, keyed by their first d integer coordinates (all d+1 sum to 0), in
// an open-addressing table at most half full.
class Lattice {
 public:
  Lattice(int64_t d, int64_t max_points, std::vector<double> scale)
      : d_(d), scale_(std::move(scale)) {
    int64_t capacity = 1;
    while (capacity < 2 * max_points * (d + 1)) capacity *= 2;
    table_.assign(capacity, -1);
  }

  int64_t size() const { return static_cast<int64_t>(keys_.size()) / d_; }

  Simplices embed(const double* positions, int64_t n) {
    const int64_t d = d_, d1 = d + 1;
    Simplices s;
    s.n = n;
    s.vertex.resize(n * d1);
    s.rank.resize(n * d1);
    s.weight.resize(n * d1);
    std::vector<double> elevated(d1), bary(d1 + 1);
    std::vector<int32_t> rem0(d1), key(d);
    for (int64_t i = 0; i < n; ++i) {
      const double* p = positions + i * d;
      double tail = 0;
      for (int64_t j = d; j >= 1; --j) {
        const double cf = p[j - 1] * scale_[j - 1];
        elevated[j] = tail - double(j) * cf;
        tail += cf;
      }
      elevated[0] = tail;
      // Nearest point of the remainder-0 sublattice (d+1)ℤ^{d+1}, then the simplex from the
      // order of the residuals; `sum` ≠ 0 means that point is off the plane, fixed by moving
      // the extreme-ranked coordinates by d+1.
      int64_t sum = 0;
      for (int64_t c = 0; c < d1; ++c) {
        const double r = std::nearbyint(elevated[c] / double(d1));
        rem0[c] = static_cast<int32_t>(r) * static_cast<int32_t>(d1);
        sum += static_cast<int64_t>(r);
      }
      int32_t* rank = s.rank.data() + i * d1;
      std::fill(rank, rank + d1, 0);
      for (int64_t a = 0; a < d1; ++a) {
        for (int64_t c = a + 1; c < d1; ++c) {
          if (elevated[a] - rem0[a] < elevated[c] - rem0[c])
            ++rank[a];
          else
            ++rank[c];
        }
      }
      for (int64_t c = 0; c < d1; ++c) {
        rank[c] += static_cast<int32_t>(sum);
        if (rank[c] < 0) {
          rank[c] += d1;
          rem0[c] += d1;
        } else if (rank[c] > d) {
          rank[c] -= d1;
          rem0[c] -= d1;
        }
      }
      std::fill(bary.begin(), bary.end(), 0.0);
      for (int64_t c = 0; c < d1; ++c) {
        const double y = (elevated[c] - rem0[c]) / double(d1);
        bary[d - rank[c]] += y;
        bary[d1 - rank[c]] -= y;
      }
      bary[0] += 1.0 + bary[d1];
      for (int64_t k = 0; k < d1; ++k) {
        for (int64_t c = 0; c < d; ++c) key[c] = rem0[c] + (rank[c] <= d - k ? k : k - d1);
        s.vertex[i * d1 + k] = find(key.data(), /*insert=*/true);
        s.weight[i * d1 + k] = bary[k];
      }
    }
    return s;
  }

  // Each vertex's two neighbours along each direction ±(−1, …, d, …, −1): (d+1) × M × 2
  // indices, M (a zero row of the value grid) where the neighbour is not occupied.
  std::vector<int32_t> neighbours() {
    const int64_t d = d_, m_count = size();
    std::vector<int32_t> result((d + 1) * m_count * 2), key(d);
    for (int64_t dir = 0; dir <= d; ++dir) {
      for (int64_t m = 0; m < m_count; ++m) {
        for (int64_t side = 0; side < 2; ++side) {
          const int32_t sign = side == 0 ? 1 : -1;
          for (int64_t c = 0; c < d; ++c)
            key[c] = keys_[m * d + c] + sign * (c == dir ? int32_t(d) : -1);
          const int32_t found = find(key.data(), /*insert=*/false);
          result[(dir * m_count + m) * 2 + side] =
              found < 0 ? static_cast<int32_t>(m_count) : found;
        }
      }
    }
    return result;
  }

  int64_t lookups = 0, probes = 0;

 private:
  int32_t find(const int32_t* key, bool insert) {
    uint64_t h = 0;
    for (int64_t c = 0; c < d_; ++c)
      h = (h ^ static_cast<uint32_t>(key[c])) * 0x100000001b3ULL;  // FNV-1a
    h ^= h >> 32;  // the mask keeps low bits, which FNV mixes least
    const uint64_t mask = table_.size() - 1;
    ++lookups;
    for (uint64_t slot = h & mask;; slot = (slot + 1) & mask) {
      ++probes;
      const int32_t index = table_[slot];
      if (index < 0) {
        if (!insert) return -1;
        table_[slot] = static_cast<int32_t>(size());
        keys_.insert(keys_.end(), key, key + d_);
        return table_[slot];
      }
      if (std::equal(key, key + d_, keys_.data() + index * d_)) return index;
    }
  }

  int64_t d_;
  std::vector<double> scale_;
  std::vector<int32_t> keys_, table_;
};

// grid[vertex] += scale · weight · row for each point's d+1 vertices (grid: (M+1) × c).
template <typename T>
void splat(const Simplices& s, const T* rows, int64_t c, double scale, T* grid) {
  const int64_t d1 = static_cast<int64_t>(s.weight.size()) / std::max<int64_t>(s.n, 1);
  at::parallel_for(0, c, kChannelGrain, [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < s.n; ++i) {
      for (int64_t t = 0; t < d1; ++t) {
        const T w = static_cast<T>(scale * s.weight[i * d1 + t]);
        T* out = grid + s.vertex[i * d1 + t] * c;
        for (int64_t ch = c0; ch < c1; ++ch) out[ch] += w * rows[i * c + ch];
      }
    }
  });
}

// The [1/2, 1, 1/2] blur along each direction in turn; in reverse order it is the adjoint
// (each direction's blur is symmetric). Row M of both buffers stays zero.
template <typename T>
at::Tensor blur(at::Tensor grid, const std::vector<int32_t>& neighbours, int64_t d1, bool reverse) {
  const int64_t m_count = grid.size(0) - 1, c = grid.size(1);
  at::Tensor next = at::zeros_like(grid);
  for (int64_t step = 0; step < d1; ++step) {
    const int64_t dir = reverse ? d1 - 1 - step : step;
    const T* in = grid.data_ptr<T>();
    T* out = next.data_ptr<T>();
    const int32_t* nb = neighbours.data() + dir * m_count * 2;
    at::parallel_for(0, m_count, kVertexGrain, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        const T *self = in + m * c, *a = in + nb[2 * m] * c, *b = in + nb[2 * m + 1] * c;
        for (int64_t ch = 0; ch < c; ++ch)
          out[m * c + ch] = self[ch] + static_cast<T>(kBlurSide) * (a[ch] + b[ch]);
      }
    });
    std::swap(grid, next);
  }
  return grid;
}

// out[i] = scale · Σ_t weight[i, t] · grid[vertex[i, t]] (out: n × c).
template <typename T>
void slice(const Simplices& s, const T* grid, int64_t c, double scale, T* out) {
  const int64_t d1 = static_cast<int64_t>(s.weight.size()) / std::max<int64_t>(s.n, 1);
  at::parallel_for(0, s.n, kPointGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      std::fill(out + i * c, out + (i + 1) * c, T(0));
      for (int64_t t = 0; t < d1; ++t) {
        const T w = static_cast<T>(scale * s.weight[i * d1 + t]);
        const T* row = grid + s.vertex[i * d1 + t] * c;
        for (int64_t ch = 0; ch < c; ++ch) out[i * c + ch] += w * row[ch];
      }
    }
  });
}

// Gradient of the positions from that of the weights, ∂L/∂w[i, t] = scale · ⟨grid[vertex],
// rows[i]⟩: vertices and ranks are constant inside a simplex, so it flows through
// w(y = (elevated − rem0)/(d+1)) and the elevation. dpos: n × d.
template <typename T>
void position_gradient(const Simplices& s, const T* grid, const T* rows, int64_t c, double scale,
                       const std::vector<double>& elevation, double* dpos) {
  const int64_t d = static_cast<int64_t>(elevation.size()), d1 = d + 1;
  at::parallel_for(0, s.n, kPointGrain, [&](int64_t i0, int64_t i1) {
    std::vector<double> dw(d1), de(d1);
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t t = 0; t < d1; ++t) {
        const T* row = grid + s.vertex[i * d1 + t] * c;
        double dot = 0;
        for (int64_t ch = 0; ch < c; ++ch) dot += double(row[ch]) * double(rows[i * c + ch]);
        dw[t] = scale * dot;
      }
      // y_c enters w[d − rank_c] with +1 and w[d+1 − rank_c] with −1, index d+1 folding into 0.
      const int32_t* rank = s.rank.data() + i * d1;
      for (int64_t k = 0; k < d1; ++k)
        de[k] = (dw[d - rank[k]] - dw[rank[k] == 0 ? 0 : d1 - rank[k]]) / double(d1);
      // elevated_k = Σ_{j>k} cf_j − k·cf_k with cf_j = p_{j−1}·scale_{j−1}.
      double below = 0;
      for (int64_t j = 1; j <= d; ++j) {
        below += de[j - 1];
        dpos[i * d + j - 1] = elevation[j - 1] * (below - double(j) * de[j]);
      }
    }
  });
}

// One sample's lattice, kept from forward for backward.
struct SampleLattice {
  Simplices keys, queries;  // queries empty when they are the keys
  std::vector<int32_t> neighbours;
  at::Tensor blurred;  // (M+1) × c: the splatted values after the blur
  const Simplices& slicing() const { return queries.n > 0 ? queries : keys; }
};

struct LatticeState : torch::CustomClassHolder {
  std::vector<SampleLattice> samples;
  std::vector<double> elevation;
};

// Builds sample b's lattice from positions laid out [B, N, d] in float64.
SampleLattice build(const at::Tensor& q, const at::Tensor& k, bool shared, int64_t b,
                    const std::vector<double>& elevation, functional::PermutohedralWork* work) {
  const int64_t d = k.size(2), nk = k.size(1), nq = q.size(1);
  Lattice lattice(d, shared ? nk : nk + nq, elevation);
  SampleLattice s;
  s.keys = lattice.embed(k[b].data_ptr<double>(), nk);
  if (!shared) s.queries = lattice.embed(q[b].data_ptr<double>(), nq);
  s.neighbours = lattice.neighbours();
  if (work) {
    work->vertices += lattice.size();
    work->lookups += lattice.lookups;
    work->probes += lattice.probes;
  }
  return s;
}

// Refuses positions ([B, N, d] float64) that are not finite or too large for int32 lattice keys;
// the tensor form, with int64 keys, keeps the bound so that both forms accept the same inputs.
void check_positions(const at::Tensor& rows, double kernel_std) {
  const int64_t d = rows.size(2);
  TORCH_CHECK(rows.numel() == 0 || at::isfinite(rows).all().item<bool>(),
              "permutohedral: positions must be finite");
  TORCH_CHECK(rows.numel() == 0 ||
                  rows.abs().max().item<double>() / kernel_std * lattice_scale(d) < kMaxElevated,
              "permutohedral: positions / kernel_std must stay below ",
              kMaxElevated / lattice_scale(d), " in magnitude (lattice keys are int32)");
}

// Positions [B, d, N] as [B, N, d] float64, checked to fit the integer lattice keys.
at::Tensor point_rows(const at::Tensor& p, double kernel_std) {
  const at::Tensor rows = p.detach().to(at::kDouble).transpose(1, 2).contiguous();
  check_positions(rows, kernel_std);
  return rows;
}

// Σ_j K_ij v_j for q: [B, d, Nq], k: [B, d, Nk], v: [B, c, Nk] → [B, c, Nq] (unnormalised).
class PermutohedralFilter : public torch::autograd::Function<PermutohedralFilter> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, double kernel_std) {
    const bool shared = q.is_same(k);
    const int64_t batch = k.size(0), d = k.size(1), c = v.size(1), d1 = d + 1;
    auto state = c10::make_intrusive<LatticeState>();
    state->elevation = elevation_scale(d, kernel_std);
    const at::Tensor kp = point_rows(k, kernel_std), qp = shared ? kp : point_rows(q, kernel_std);
    const at::Tensor rows = v.detach().transpose(1, 2).contiguous();
    at::Tensor out = at::empty({batch, q.size(2), c}, v.options());
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "permutohedral_filter", [&] {
      for (int64_t b = 0; b < batch; ++b) {
        SampleLattice s = build(qp, kp, shared, b, state->elevation, nullptr);
        at::Tensor grid =
            at::zeros({static_cast<int64_t>(s.neighbours.size()) / (2 * d1) + 1, c}, v.options());
        splat<scalar_t>(s.keys, rows[b].data_ptr<scalar_t>(), c, 1.0, grid.data_ptr<scalar_t>());
        s.blurred = blur<scalar_t>(grid, s.neighbours, d1, /*reverse=*/false);
        slice<scalar_t>(s.slicing(), s.blurred.data_ptr<scalar_t>(), c, slice_scale(d),
                        out[b].data_ptr<scalar_t>());
        state->samples.push_back(std::move(s));
      }
    });
    ctx->saved_data["lattice"] = c10::IValue::make_capsule(state);
    ctx->save_for_backward({v});
    return out.transpose(1, 2);
  }

  // L = Σ_i ⟨g_i, α Σ_t w_it T[vertex_it]⟩ with T = blur(splat(v)): ∂L/∂v is g splatted at
  // the queries, blurred in reverse and sliced at the keys; the weights' gradients pair the
  // same grids with v (keys) and with g (queries).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto state =
        c10::static_intrusive_pointer_cast<LatticeState>(ctx->saved_data["lattice"].toCapsule());
    const at::Tensor v = ctx->get_saved_variables()[0];
    const int64_t batch = v.size(0), c = v.size(1), nk = v.size(2),
                  d = static_cast<int64_t>(state->elevation.size());
    const int64_t nq = grads[0].size(2), d1 = d + 1;
    const at::Tensor g = grads[0].transpose(1, 2).contiguous().to(v.scalar_type()),
                     rows = v.transpose(1, 2).contiguous();
    at::Tensor dv = at::empty({batch, nk, c}, v.options());
    at::Tensor dq = at::zeros({batch, nq, d}, v.options().dtype(at::kDouble)),
               dk = at::zeros({batch, nk, d}, dq.options());
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "permutohedral_filter_backward", [&] {
      for (int64_t b = 0; b < batch; ++b) {
        const SampleLattice& s = state->samples[b];
        at::Tensor grid = at::zeros_like(s.blurred);
        splat<scalar_t>(s.slicing(), g[b].data_ptr<scalar_t>(), c, slice_scale(d),
                        grid.data_ptr<scalar_t>());
        grid = blur<scalar_t>(grid, s.neighbours, d1, /*reverse=*/true);
        slice<scalar_t>(s.keys, grid.data_ptr<scalar_t>(), c, 1.0, dv[b].data_ptr<scalar_t>());
        position_gradient<scalar_t>(s.keys, grid.data_ptr<scalar_t>(), rows[b].data_ptr<scalar_t>(),
                                    c, 1.0, state->elevation, dk[b].data_ptr<double>());
        position_gradient<scalar_t>(s.slicing(), s.blurred.data_ptr<scalar_t>(),
                                    g[b].data_ptr<scalar_t>(), c, slice_scale(d), state->elevation,
                                    dq[b].data_ptr<double>());
      }
    });
    // With queries ≡ keys the same tensor arrives twice and autograd adds both parts.
    return {dq.transpose(1, 2).to(v.scalar_type()), dk.transpose(1, 2).to(v.scalar_type()),
            dv.transpose(1, 2), at::Tensor()};
  }
};

// --- the same lattice from tensor operations, for any device ---------------------------------

// Each point's simplex as Lattice::embed finds it (the same elevation, rounding, ranks with
// the same tie order, and fix for off-plane points), in float64: its d+1 vertices as rows
// [sample, first d coordinates] and its barycentric weights. The integer parts come from
// detached values, so autograd's gradient flows through the weights' elevation alone: the
// derivative position_gradient writes out.
struct TensorSimplices {
  at::Tensor rows;    // [B·N·(d+1), 1 + d] int64
  at::Tensor weight;  // [B, N, d+1] float64
};

TensorSimplices tensor_simplices(const at::Tensor& p, double kernel_std) {
  const int64_t batch = p.size(0), d = p.size(1), n = p.size(2), d1 = d + 1;
  const auto ints = at::TensorOptions(p.device()).dtype(at::kLong);
  const at::Tensor positions = p.to(at::kDouble).transpose(1, 2);  // [B, N, d]
  check_positions(positions.detach(), kernel_std);
  // elevated_r = Σ_{j>r} cf_j − r·cf_r with cf_j = p_{j−1}·scale_{j−1}.
  const std::vector<double> scale = elevation_scale(d, kernel_std);
  at::Tensor basis = at::zeros({d1, d}, at::kDouble);
  auto entry = basis.accessor<double, 2>();
  for (int64_t r = 0; r <= d; ++r) {
    for (int64_t j = std::max<int64_t>(r, 1); j <= d; ++j)
      entry[r][j - 1] = (j == r ? -double(j) : 1.0) * scale[j - 1];
  }
  const at::Tensor elevated = at::matmul(positions, basis.to(p.device()).t());  // [B, N, d+1]
  const at::Tensor nearest = at::round(elevated.detach() / double(d1));
  const at::Tensor residual = elevated.detach() - nearest * double(d1);
  // rank_x = #{a < x: res_a ≥ res_x} + #{a > x: res_a > res_x}, Lattice::embed's pairwise count.
  const at::Tensor res_x = residual.unsqueeze(-1), res_a = residual.unsqueeze(-2);
  const at::Tensor earlier = at::ones({d1, d1}, ints.dtype(at::kBool)).tril(-1);
  at::Tensor rank = at::where(earlier, res_a >= res_x, res_a > res_x).sum(-1) +
                    nearest.sum(-1, /*keepdim=*/true).to(at::kLong);
  const at::Tensor wrap = (rank < 0).to(at::kLong) - (rank > d).to(at::kLong);
  rank = rank + wrap * d1;
  const at::Tensor rem0 = (nearest * double(d1)).to(at::kLong) + wrap * d1;
  const at::Tensor y = (elevated - rem0.to(at::kDouble)) / double(d1);
  const at::Tensor bary = at::zeros({batch, n, d1 + 1}, y.options())
                              .scatter_add(-1, d - rank, y)
                              .scatter_add(-1, d1 - rank, -y);
  const at::Tensor weight =
      at::cat({bary.narrow(-1, 0, 1) + (1.0 + bary.narrow(-1, d1, 1)), bary.narrow(-1, 1, d)}, -1);
  const at::Tensor k = at::arange(d1, ints).view({d1, 1});
  const at::Tensor coords = rem0.narrow(-1, 0, d).unsqueeze(2) +
                            at::where(rank.narrow(-1, 0, d).unsqueeze(2) <= d - k, k, k - d1);
  const at::Tensor sample =
      at::arange(batch, ints).view({batch, 1, 1, 1}).expand({batch, n, d1, 1});
  return {at::cat({sample, coords}, -1).reshape({-1, 1 + d}), weight};
}

// Per direction, each vertex's neighbours at ± (−1, …, d, …, −1) as [2, M+1] ids: one
// distinct sort of the table with its shifted copies in every direction finds which are
// occupied; the others, and row M (a zero row of the value grid, its own neighbour), point at M.
std::vector<at::Tensor> tensor_neighbours(const at::Tensor& table) {
  const int64_t m = table.size(0), d = table.size(1) - 1;
  const auto ints = table.options();
  std::vector<int64_t> steps;  // [d+1, 2, 1+d]: per direction, + then − the step
  for (int64_t dir = 0; dir <= d; ++dir) {
    for (const int64_t sign : {1, -1}) {
      steps.push_back(0);  // the sample column
      for (int64_t j = 0; j < d; ++j) steps.push_back(sign * (j == dir ? d : -1));
    }
  }
  const at::Tensor offsets = at::tensor(steps, at::kLong).to(table.device()).view({2 * (d + 1), 1, d + 1});
  at::Tensor distinct, ids;
  std::tie(distinct, ids, std::ignore) =
      at::unique_dim(at::cat({table, (table.unsqueeze(0) + offsets).view({-1, d + 1})}), 0,
                     /*sorted=*/true, /*return_inverse=*/true);
  const at::Tensor vertex =
      at::full({distinct.size(0)}, m, ints).index_put_({ids.narrow(0, 0, m)}, at::arange(m, ints));
  const at::Tensor shifted = vertex.index_select(0, ids.narrow(0, m, 2 * (d + 1) * m)).view({d + 1, 2, m});
  std::vector<at::Tensor> neighbours;
  for (int64_t dir = 0; dir <= d; ++dir) neighbours.push_back(at::cat({shifted[dir], at::full({2, 1}, m, ints)}, 1));
  return neighbours;
}

// The occupied vertices as distinct rows (the sample in each row gives every sample a lattice of
// its own), and each point's d+1 vertex ids among them: the hash table as a sort (sorted rows),
// or (`hashed`) from the hash table's kernels (lattice_hash.h: the same vertices in another
// order). With `neighbours` also each vertex's neighbours (tensor_neighbours' layout), which the
// hash table's kernels find with the table.
struct VertexTable {
  at::Tensor rows;                      // [M, 1 + d]
  at::Tensor key_vertex, query_vertex;  // [B·N, d+1]; query_vertex undefined when shared
  std::vector<at::Tensor> neighbours;   // where asked for
};

VertexTable vertex_table(const TensorSimplices& keys, const TensorSimplices* queries, bool hashed = false,
                         bool neighbours = false) {
  const int64_t d1 = keys.weight.size(-1), nk = keys.rows.size(0);
  const at::Tensor all = queries ? at::cat({keys.rows, queries->rows}) : keys.rows;
  VertexTable table;
  at::Tensor ids;
  if (hashed) {
    lattice_hash::Table built = lattice_hash::build(all);
    table.rows = built.rows;
    ids = built.ids;
    table.neighbours = std::move(built.neighbours);
  } else {
    std::tie(table.rows, ids, std::ignore) = at::unique_dim(all, 0, /*sorted=*/true, /*return_inverse=*/true);
    if (neighbours) table.neighbours = tensor_neighbours(table.rows);
  }
  table.key_vertex = ids.narrow(0, 0, nk).view({-1, d1});
  if (queries) table.query_vertex = ids.narrow(0, nk, queries->rows.size(0)).view({-1, d1});
  return table;
}

// PermutohedralFilter's forward (the same vertices, weights, blur and scales) from tensor
// operations, so autograd derives its gradient: splat with index_add, blur with index_select,
// slice with index_select, over one grid holding every sample's vertices. The vertex table
// from sorts, or (`hashed`) from the hash table's kernels.
at::Tensor tensor_filter(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double kernel_std, bool hashed) {
  const bool shared = q.is_same(k);
  const int64_t batch = v.size(0), c = v.size(1), d = k.size(1), d1 = d + 1;
  const TensorSimplices keys = tensor_simplices(k, kernel_std);
  const TensorSimplices queries = shared ? keys : tensor_simplices(q, kernel_std);
  const VertexTable table = vertex_table(keys, shared ? nullptr : &queries, hashed, /*neighbours=*/true);
  const int64_t m = table.rows.size(0);
  const at::Tensor rows = v.transpose(1, 2).reshape({-1, c});
  const at::Tensor key_weight = keys.weight.reshape({-1, d1}).to(v.scalar_type());
  at::Tensor grid = at::zeros({m + 1, c}, v.options());
  for (int64_t t = 0; t < d1; ++t)
    grid = grid.index_add(0, table.key_vertex.select(1, t),
                          key_weight.select(1, t).unsqueeze(1) * rows);
  for (const at::Tensor& nb : table.neighbours)
    grid = grid + kBlurSide * (grid.index_select(0, nb[0]) + grid.index_select(0, nb[1]));
  const at::Tensor query_vertex = shared ? table.key_vertex : table.query_vertex;
  const at::Tensor query_weight =
      (queries.weight.reshape({-1, d1}) * slice_scale(d)).to(v.scalar_type());
  at::Tensor out = at::zeros({query_vertex.size(0), c}, v.options());
  for (int64_t t = 0; t < d1; ++t)
    out = out +
          query_weight.select(1, t).unsqueeze(1) * grid.index_select(0, query_vertex.select(1, t));
  return out.view({batch, -1, c}).transpose(1, 2);
}

at::Tensor sorted_filter(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double kernel_std) {
  return tensor_filter(q, k, v, kernel_std, /*hashed=*/false);
}

at::Tensor hashed_filter(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double kernel_std) {
  return tensor_filter(q, k, v, kernel_std, /*hashed=*/true);
}

at::Tensor cpu_filter(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      double kernel_std) {
  return PermutohedralFilter::apply(q, k, v, kernel_std);
}

void check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  double kernel_std) {
  TORCH_CHECK(q.dim() >= 3 && k.dim() >= 3 && v.dim() >= 3,
              "permutohedral: q, k, v must be [B, D or C, positions...], got ", q.sizes(), ", ",
              k.sizes(), ", ", v.sizes());
  TORCH_CHECK(q.size(0) == k.size(0) && k.size(0) == v.size(0),
              "permutohedral: batch sizes differ");
  TORCH_CHECK(q.size(1) == k.size(1) && k.size(1) >= 1,
              "permutohedral: q and k need the same position width");
  TORCH_CHECK(
      k.numel() / k.size(0) / k.size(1) == v.numel() / std::max<int64_t>(v.size(0) * v.size(1), 1),
      "permutohedral: k and v need the same positions");
  TORCH_CHECK(kernel_std > 0, "permutohedral: kernel_std must be positive, got ", kernel_std);
  TORCH_CHECK(q.device() == k.device() && k.device() == v.device(),
              "permutohedral: q, k and v must be on one device, got ", q.device(), ", ", k.device(),
              ", ", v.device());
}

using Filter = at::Tensor (*)(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              double kernel_std);

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     double kernel_std, bool normalize, Filter filter) {
  check_inputs(q, k, v, kernel_std);
  TORCH_CHECK(q.scalar_type() == v.scalar_type() && k.scalar_type() == v.scalar_type(),
              "permutohedral: q, k and v must share a dtype");
  // bf16 and half (autocast) are filtered in float, so sums over many keys accumulate in fp32.
  const at::ScalarType type = v.scalar_type();
  const at::ScalarType compute = type == at::kHalf || type == at::kBFloat16 ? at::kFloat : type;
  AutocastDisabled in_float;
  const at::Tensor qf = q.flatten(2).to(compute), kf = q.is_same(k) ? qf : k.flatten(2).to(compute);
  at::Tensor vf = v.flatten(2).to(compute);
  const int64_t c = vf.size(1);
  // The homogeneous 1 filtered beside the values is the normaliser Σ_j K_ij.
  if (normalize) vf = at::cat({vf, at::ones({vf.size(0), 1, vf.size(2)}, vf.options())}, 1);
  at::Tensor out = filter(qf, kf, vf, kernel_std);
  if (normalize) {
    const at::Tensor den = out.narrow(1, c, 1), reached = den > 0;
    out = at::where(reached, out.narrow(1, 0, c) / at::where(reached, den, at::ones_like(den)),
                    at::zeros({}, den.options()));
  }
  std::vector<int64_t> shape{q.size(0), c};
  for (int64_t i = 2; i < q.dim(); ++i) shape.push_back(q.size(i));
  return out.reshape(shape).to(type);
}

}  // namespace

namespace functional {

at::Tensor permutohedral_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   double kernel_std, bool normalize) {
  const Filter filter = v.device().is_cpu()          ? cpu_filter
                        : kernels_run_on(v.device()) ? hashed_filter
                                                     : sorted_filter;
  return attention(q, k, v, kernel_std, normalize, filter);
}

at::Tensor permutohedral_attention_tensor(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, double kernel_std, bool normalize) {
  return attention(q, k, v, kernel_std, normalize, sorted_filter);
}

at::Tensor permutohedral_attention_hashed(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, double kernel_std, bool normalize) {
  return attention(q, k, v, kernel_std, normalize, hashed_filter);
}

at::Tensor permutohedral_vertices(const at::Tensor& q, const at::Tensor& k, double kernel_std) {
  check_inputs(q, k, k, kernel_std);
  at::NoGradGuard no_grad;
  const TensorSimplices keys = tensor_simplices(k.flatten(2), kernel_std);
  if (q.is_same(k)) return vertex_table(keys, nullptr).rows;
  const TensorSimplices queries = tensor_simplices(q.flatten(2), kernel_std);
  return vertex_table(keys, &queries).rows;
}

PermutohedralWork permutohedral_work(const at::Tensor& q, const at::Tensor& k,
                                     int64_t value_channels, double kernel_std) {
  check_inputs(q, k, k, kernel_std);
  const bool shared = q.is_same(k);
  // Counted on the CPU lattice whatever the positions' device.
  const at::Tensor kp = point_rows(k.flatten(2).cpu(), kernel_std),
                   qp = shared ? kp : point_rows(q.flatten(2).cpu(), kernel_std);
  const int64_t d1 = k.size(1) + 1;
  PermutohedralWork work;
  for (int64_t b = 0; b < k.size(0); ++b) {
    const int64_t before = work.vertices;
    build(qp, kp, shared, b, elevation_scale(k.size(1), kernel_std), &work);
    // Splat each key and slice each query over its d+1 vertices; blur 2 per vertex and direction.
    work.products +=
        ((kp.size(1) + qp.size(1)) * d1 + 2 * d1 * (work.vertices - before)) * value_channels;
  }
  return work;
}

}  // namespace functional

void PermutohedralOptions::check() const {
  TORCH_CHECK(channels() > 0, "permutohedral: channels must be positive, got ", channels());
  TORCH_CHECK(heads() >= 1 && channels() % heads() == 0, "permutohedral: heads must divide channels (", channels(),
              "), got ", heads());
  TORCH_CHECK(filter_dim() >= 1, "permutohedral: filter_dim must be at least 1, got ", filter_dim());
  TORCH_CHECK(kernel_std() > 0, "permutohedral: kernel_std must be positive, got ", kernel_std());
}

PermutohedralImpl::PermutohedralImpl(const PermutohedralOptions& options_) : options(options_) {
  reset();
}

void PermutohedralImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  // The extractors see the map and its two coordinates.
  const int64_t width = options.heads() * options.filter_dim();
  feature_ =
      register_module("feature", torch::nn::Conv2d(torch::nn::Conv2dOptions(c + 2, width, 1)));
  if (!options.shared_qk()) {
    query_ = register_module("query", torch::nn::Conv2d(torch::nn::Conv2dOptions(c + 2, width, 1)));
  }
  descriptor_ = register_module("descriptor", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 1)));
  coord_scale = register_parameter("coord_scale", torch::randn({1, 2, 1, 1}));
}

torch::Tensor PermutohedralImpl::positions(torch::nn::Conv2d extractor,
                                           const torch::Tensor& input) {
  return torch::leaky_relu(extractor->forward(input), options.negative_slope());
}

torch::Tensor PermutohedralImpl::forward(const torch::Tensor& x) {
  const int64_t batch = x.size(0), h = x.size(2), w = x.size(3);
  const int64_t d = options.filter_dim(), values = options.channels() / options.heads();
  const torch::Tensor descriptors = descriptor_->forward(x);
  // Positions pick each pixel's simplex and its weights: extracted in bf16 they moved the output
  // 1.6% and the gradients 3.6-3.8% from fp32 (the harness's bf16 test), in float 0.2%. So under
  // autocast only the descriptor runs in bf16; the position extractors and the lattice run in
  // float, as EM does in ema.cpp.
  AutocastDisabled in_float;
  const torch::Tensor xf = x.to(coord_scale.scalar_type());
  // Pixel coordinates centred as the reference does (index − size/2, integer division).
  const auto opts = xf.options();
  const torch::Tensor rows = (torch::arange(h, opts) - double(h / 2)).view({h, 1}).expand({h, w});
  const torch::Tensor cols = (torch::arange(w, opts) - double(w / 2)).view({1, w}).expand({h, w});
  const torch::Tensor coords = torch::stack({rows, cols}).unsqueeze(0) * coord_scale;
  const torch::Tensor input = torch::cat({xf, coords.expand({batch, 2, h, w})}, 1);
  const torch::Tensor keys = positions(feature_, input);
  const torch::Tensor queries = options.shared_qk() ? keys : positions(query_, input);
  std::vector<torch::Tensor> heads;
  for (int64_t i = 0; i < options.heads(); ++i) {
    const torch::Tensor k = keys.narrow(1, i * d, d);
    const torch::Tensor q = options.shared_qk() ? k : queries.narrow(1, i * d, d);
    heads.push_back(functional::permutohedral_attention(
        q, k, descriptors.narrow(1, i * values, values).to(k.scalar_type()), options.kernel_std(),
        options.normalize()));
  }
  return torch::cat(heads, 1);
}

int64_t PermutohedralImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3];
  const int64_t d1 = options.filter_dim() + 1, heads = options.heads();
  // Values per head, plus the homogeneous 1 when normalising.
  const int64_t filtered = c / heads + (options.normalize() ? 1 : 0);
  // Coordinate scale, position extractor(s), descriptor.
  const int64_t extractors =
      (options.shared_qk() ? 1 : 2) * b * n * (c + 2) * heads * options.filter_dim();
  const int64_t projections = 2 * n + extractors + b * n * c * c;
  // Splat n keys and slice n queries over d+1 vertices; blur 2 per vertex and direction, with
  // up to d+1 vertices per embedded position (keys, and queries when they differ).
  const int64_t embedded = options.shared_qk() ? n : 2 * n;
  const int64_t lattice = (2 * n + 2 * d1 * embedded) * d1 * filtered;
  return projections + b * heads * lattice;
}

}  // namespace attnseg
