#include "attention/scram.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <random>

#include "core/device.h"
#include "core/rng.h"

namespace attnseg {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kQueryGrain = 64, kScatterGrain = 8;

// The k best (score, index) pairs of one query, best first, indices distinct.
struct TopK {
  float* score;
  int64_t* index;
  int64_t k;
  bool holds(int64_t j) const { return std::find(index, index + k, j) != index + k; }
  // `s` scores key j, which the list does not hold yet.
  void offer(float s, int64_t j) {
    if (s <= score[k - 1]) return;
    int64_t t = k - 1;
    while (t > 0 && score[t - 1] < s) {
      score[t] = score[t - 1];
      index[t] = index[t - 1];
      --t;
    }
    score[t] = s;
    index[t] = j;
  }
};

// a·b over d numbers, with four partial sums the compiler can keep in flight at once.
template <typename T>
T dot(const T* a, const T* b, int64_t d) {
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t t = 0;
  for (; t + 4 <= d; t += 4) {
    s0 += a[t] * b[t];
    s1 += a[t + 1] * b[t + 1];
    s2 += a[t + 2] * b[t + 2];
    s3 += a[t + 3] * b[t + 3];
  }
  for (; t < d; ++t) s0 += a[t] * b[t];
  return (s0 + s1) + (s2 + s3);
}

// Softmax attention of each query over its k found keys, as one autograd function on
// channels-last rows: q, k [B, N, D], v [B, N, C], indices [B, N, kk] → [B, N, C].
class SparseAttentionFunction : public torch::autograd::Function<SparseAttentionFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& indices) {
    const int64_t b = q.size(0), n = q.size(1), d = q.size(2), c = v.size(2), kk = indices.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    at::Tensor out = at::empty({b, n, c}, v.options()), weights = at::empty({b, n, kk}, v.options());
    const int64_t* idx = indices.data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "sparse_attention", [&] {
      const scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
      scalar_t *op = out.data_ptr<scalar_t>(), *wp = weights.data_ptr<scalar_t>();
      at::parallel_for(0, b * n, kQueryGrain, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const int64_t base = (p / n) * n;  // the sample's first row
          const int64_t* keys = idx + p * kk;
          scalar_t* w = wp + p * kk;
          scalar_t top = -std::numeric_limits<scalar_t>::infinity(), total = 0;
          for (int64_t t = 0; t < kk; ++t) {
            w[t] = static_cast<scalar_t>(scale) * dot(qp + p * d, kp + (base + keys[t]) * d, d);
            top = std::max(top, w[t]);
          }
          for (int64_t t = 0; t < kk; ++t) total += (w[t] = std::exp(w[t] - top));
          scalar_t* o = op + p * c;
          std::fill(o, o + c, scalar_t(0));
          for (int64_t t = 0; t < kk; ++t) {
            const scalar_t wt = (w[t] /= total);
            const scalar_t* row = vp + (base + keys[t]) * c;
            for (int64_t ch = 0; ch < c; ++ch) o[ch] += wt * row[ch];
          }
        }
      });
    });
    ctx->save_for_backward({q, k, v, indices, weights});
    return out;
  }

  // With s_t = scale·q·k_t, w = softmax(s), o = Σ w_t v_t: ∂w_t = g·v_t, ∂s_t = w_t (∂w_t − Σ_u w_u ∂w_u),
  // then ∂q = scale Σ ∂s_t k_t per query, and per key the scatters ∂k_t += scale ∂s_t q and
  // ∂v_t += w_t g, split over channel ranges so that no two threads add to the same number.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &indices = saved[3], &weights = saved[4];
    const at::Tensor g = grads[0].contiguous();
    const int64_t b = q.size(0), n = q.size(1), d = q.size(2), c = v.size(2), kk = indices.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    at::Tensor dq = at::empty_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
    at::Tensor ds = at::empty_like(weights);
    const int64_t* idx = indices.data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "sparse_attention_backward", [&] {
      const scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>(),
                     *gp = g.data_ptr<scalar_t>(), *wp = weights.data_ptr<scalar_t>();
      scalar_t *dqp = dq.data_ptr<scalar_t>(), *dkp = dk.data_ptr<scalar_t>(), *dvp = dv.data_ptr<scalar_t>(),
               *dsp = ds.data_ptr<scalar_t>();
      at::parallel_for(0, b * n, kQueryGrain, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const int64_t base = (p / n) * n;
          const int64_t* keys = idx + p * kk;
          const scalar_t* w = wp + p * kk;
          scalar_t* s = dsp + p * kk;
          scalar_t mean = 0;
          for (int64_t t = 0; t < kk; ++t) mean += w[t] * (s[t] = dot(gp + p * c, vp + (base + keys[t]) * c, c));
          scalar_t* out = dqp + p * d;
          std::fill(out, out + d, scalar_t(0));
          for (int64_t t = 0; t < kk; ++t) {
            s[t] = w[t] * (s[t] - mean);
            const scalar_t f = static_cast<scalar_t>(scale) * s[t];
            const scalar_t* row = kp + (base + keys[t]) * d;
            for (int64_t ch = 0; ch < d; ++ch) out[ch] += f * row[ch];
          }
        }
      });
      // Scatter to keys and values: each task owns a range of channels of every row.
      auto scatter = [&](scalar_t* target, int64_t width, const scalar_t* source, const scalar_t* factor, double mul) {
        at::parallel_for(0, b * width, kScatterGrain, [&](int64_t begin, int64_t end) {
          for (int64_t task = begin; task < end;) {
            const int64_t bi = task / width, c0 = task % width, c1 = std::min(width, c0 + (end - task));
            for (int64_t i = bi * n; i < (bi + 1) * n; ++i) {
              const scalar_t* src = source + i * width;
              for (int64_t t = 0; t < kk; ++t) {
                const scalar_t f = static_cast<scalar_t>(mul) * factor[i * kk + t];
                scalar_t* dst = target + (bi * n + idx[i * kk + t]) * width;
                for (int64_t ch = c0; ch < c1; ++ch) dst[ch] += f * src[ch];
              }
            }
            task += c1 - c0;
          }
        });
      };
      scatter(dkp, d, qp, dsp, scale);
      scatter(dvp, c, gp, wp, 1.0);
    });
    return {dq, dk, dv, at::Tensor()};
  }
};

int64_t search_radii(int64_t h, int64_t w) {
  int64_t n = 0;
  for (int64_t r = std::max(h, w); r >= 1; r /= 2) ++n;
  return n;
}

// Keys gathered at once to score candidates (16 MB of floats; the gather over every query at
// 128×256 with k = 16 and D = 64 would take 1.5 GB). On the CPU a block above glibc's 32 MB
// mmap threshold is faulted in afresh on every call: 40 times slower, measured at 64×128.
constexpr int64_t kGatherElements = int64_t{1} << 22;

// q_i·k_j for the candidates j [B, N, M] of each query i, q and k as float rows [B·N, D]: a
// product and a sum, not a batched matrix product, so no TF32 whatever the matmul settings.
at::Tensor score_candidates(const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& candidates) {
  const int64_t b = candidates.size(0), n = candidates.size(1), m = candidates.size(2),
                d = q.size(1);
  const at::Tensor rows =
      (candidates + at::arange(b, candidates.options()).mul_(n).view({b, 1, 1})).view({b * n, m});
  const int64_t chunk = std::max<int64_t>(1, kGatherElements / std::max<int64_t>(1, m * d));
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < b * n; start += chunk) {
    const int64_t len = std::min(chunk, b * n - start);
    const at::Tensor keys =
        k.index_select(0, rows.narrow(0, start, len).reshape(-1)).view({len, m, d});
    parts.push_back(keys.mul_(q.narrow(0, start, len).unsqueeze(1)).sum(2));
  }
  return at::cat(parts).view({b, n, m});
}

// The kk candidates of highest score, each index counted once, best first. Stable sorts give
// ties to the candidate listed first, as the kernel's list does (a newcomer must score strictly
// higher than a held key, and an index met again is skipped): the held keys come first.
std::pair<at::Tensor, at::Tensor> keep_best(at::Tensor scores, const at::Tensor& candidates,
                                            int64_t kk) {
  const int64_t m = candidates.size(2);
  if (m > 1) {
    at::Tensor sorted, order;
    std::tie(sorted, order) = candidates.sort(/*stable=*/c10::optional<bool>(true), /*dim=*/2);
    const at::Tensor repeat = sorted.narrow(2, 1, m - 1) == sorted.narrow(2, 0, m - 1);
    const at::Tensor again = at::zeros(candidates.sizes(), candidates.options().dtype(at::kBool))
                                 .scatter_(2, order.narrow(2, 1, m - 1), repeat);
    scores = scores.masked_fill(again, -std::numeric_limits<float>::infinity());
  }
  at::Tensor best, position;
  std::tie(best, position) =
      scores.sort(/*stable=*/c10::optional<bool>(true), /*dim=*/2, /*descending=*/true);
  position = position.narrow(2, 0, kk);
  return {best.narrow(2, 0, kk).contiguous(), candidates.gather(2, position)};
}

// Propagation: each pixel's neighbour one step along `dim` (1: rows, 2: columns of the grid
// [B, H, W, kk]) in direction `dir` matched j, so the pixel tries j − dir along that dim.
// Where the neighbour or the shifted key lies off the map the kernel tries nothing; here the
// pixel's best held key stands in, which changes nothing either.
at::Tensor propagated(const at::Tensor& grid, int64_t dim, int64_t dir) {
  const int64_t w = grid.size(2), len = grid.size(dim), step = dim == 1 ? w : 1;
  const at::Tensor from = grid.roll(-dir, dim);  // from[p] = grid[p + dir], wrapped at the border
  std::vector<int64_t> line(4, 1);
  line[dim] = len;
  const at::Tensor pixel = at::arange(len, grid.options()).view(line);
  const at::Tensor key = dim == 1 ? from.div(w, "floor") : from.remainder(w);
  const at::Tensor on_map =
      (pixel + dir).ge(0) & (pixel + dir).lt(len) & (key - dir).ge(0) & (key - dir).lt(len);
  return at::where(on_map, from - dir * step, grid.narrow(3, 0, 1)).flatten(1, 2);
}

// Random search: around each held key, one sample per window of radius max(H, W) halving to
// 1, clamped to the map: [B, N, kk·radii], each held key's radii in turn.
at::Tensor random_search(const at::Tensor& index, int64_t h, int64_t w, at::Generator& gen) {
  const at::Tensor cy = index.div(w, "floor"), cx = index.remainder(w);
  std::vector<at::Tensor> samples;
  for (int64_t r = std::max(h, w); r >= 1; r /= 2) {
    const at::Tensor jy =
        (cy + at::randint(-r, r + 1, cy.sizes(), gen, cy.options())).clamp_(0, h - 1);
    const at::Tensor jx =
        (cx + at::randint(-r, r + 1, cx.sizes(), gen, cx.options())).clamp_(0, w - 1);
    samples.push_back(jy * w + jx);
  }
  return at::stack(samples, 3).flatten(2);
}

// A generator for the device seeded with `seed`, apart from the device's default generator
// (cloned for its type: no CUDA header names the CUDA one).
at::Generator seeded_generator(const c10::Device& device, uint64_t seed) {
  at::Generator shared = at::globalContext().defaultGenerator(device), gen;
  {
    std::lock_guard<std::mutex> lock(shared.mutex());
    gen = shared.clone();
  }
  gen.set_current_seed(seed);
  return gen;
}

}  // namespace

int64_t patchmatch_evaluations(int64_t h, int64_t w, int64_t topk, int64_t iterations) {
  // Initial candidates, then per iteration two neighbours' k candidates and, for each of the
  // k current candidates, one random sample per radius.
  return topk + iterations * (2 * topk + topk * search_radii(h, w));
}

namespace functional {

at::Tensor patchmatch_topk(const at::Tensor& q_in, const at::Tensor& k_in, int64_t topk, int64_t iterations,
                           uint64_t seed) {
  const int64_t b = q_in.size(0), d = q_in.size(1), h = q_in.size(2), w = q_in.size(3), n = h * w;
  TORCH_CHECK(topk >= 1, "patchmatch: topk must be positive");
  const int64_t kk = std::min(topk, n);
  const at::Tensor q = q_in.detach().to(at::kCPU, at::kFloat).reshape({b, d, n}).transpose(1, 2).contiguous();
  const at::Tensor k = k_in.detach().to(at::kCPU, at::kFloat).reshape({b, d, n}).transpose(1, 2).contiguous();
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  at::Tensor index = at::empty({b, n, kk}, at::kLong), score = at::empty({b, n, kk}, at::kFloat);
  at::Tensor next_index = index.clone(), next_score = score.clone();
  // Scores key j for query i unless the list already holds it (the common case once
  // neighbours agree), which would leave the list as it is.
  auto consider = [&](TopK& list, int64_t bi, int64_t i, int64_t j) {
    if (!list.holds(j)) list.offer(dot(qp + (bi * n + i) * d, kp + (bi * n + j) * d, d), j);
  };
  auto top = [&](at::Tensor& idx, at::Tensor& sc, int64_t bi, int64_t i) {
    return TopK{sc.data_ptr<float>() + (bi * n + i) * kk, idx.data_ptr<int64_t>() + (bi * n + i) * kk, kk};
  };
  // Random initialisation: kk distinct positions per query (a partial Fisher-Yates shuffle).
  at::parallel_for(0, b * n, 64, [&](int64_t begin, int64_t end) {
    // The identity permutation, restored after each query by undoing its kk swaps.
    std::vector<int64_t> pool(n), swapped(kk);
    for (int64_t j = 0; j < n; ++j) pool[j] = j;
    for (int64_t p = begin; p < end; ++p) {
      Rng rng(seed ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(p + 1)));
      const int64_t bi = p / n, i = p % n;
      TopK t = top(index, score, bi, i);
      for (int64_t s = 0; s < kk; ++s) {
        t.score[s] = -std::numeric_limits<float>::infinity();
        t.index[s] = -1;
      }
      for (int64_t s = 0; s < kk; ++s) {
        swapped[s] = rng.integer(s, n - 1);
        std::swap(pool[s], pool[swapped[s]]);
        consider(t, bi, i, pool[s]);
      }
      for (int64_t s = kk - 1; s >= 0; --s) std::swap(pool[s], pool[swapped[s]]);
    }
  });
  for (int64_t it = 0; it < iterations; ++it) {
    const int64_t dir = it % 2 == 0 ? -1 : 1;  // neighbours left/up, then right/down
    at::parallel_for(0, b * n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        Rng rng(seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>((it + 1) * b * n + p + 1)));
        const int64_t bi = p / n, i = p % n, y = i / w, x = i % w;
        TopK mine = top(index, score, bi, i), out = top(next_index, next_score, bi, i);
        std::copy(mine.score, mine.score + kk, out.score);
        std::copy(mine.index, mine.index + kk, out.index);
        // Propagation: the neighbour at (y, x + dir) matched j; this pixel tries j − (0, dir).
        for (const auto& [ny, nx] : {std::pair<int64_t, int64_t>{y, x + dir}, {y + dir, x}}) {
          if (ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
          const TopK nb = top(index, score, bi, ny * w + nx);
          for (int64_t s = 0; s < kk; ++s) {
            const int64_t jy = nb.index[s] / w + (y - ny), jx = nb.index[s] % w + (x - nx);
            if (jy >= 0 && jy < h && jx >= 0 && jx < w) consider(out, bi, i, jy * w + jx);
          }
        }
        // Random search around each candidate held before this step, radius halving to 1.
        for (int64_t s = 0; s < kk; ++s) {
          const int64_t cy = mine.index[s] / w, cx = mine.index[s] % w;
          for (int64_t r = std::max(h, w); r >= 1; r /= 2) {
            const int64_t jy = std::clamp<int64_t>(cy + rng.integer(-r, r), 0, h - 1);
            const int64_t jx = std::clamp<int64_t>(cx + rng.integer(-r, r), 0, w - 1);
            consider(out, bi, i, jy * w + jx);
          }
        }
      }
    });
    std::swap(index, next_index);
    std::swap(score, next_score);
  }
  return index;
}

at::Tensor patchmatch_topk_tensor(const at::Tensor& q_in, const at::Tensor& k_in, int64_t topk,
                                  int64_t iterations, uint64_t seed) {
  const int64_t b = q_in.size(0), d = q_in.size(1), h = q_in.size(2), w = q_in.size(3), n = h * w;
  TORCH_CHECK(topk >= 1, "patchmatch: topk must be positive");
  const int64_t kk = std::min(topk, n);
  at::NoGradGuard no_grad;
  auto rows = [&](const at::Tensor& t) {
    return t.detach()
        .to(at::kFloat)
        .reshape({b, d, n})
        .transpose(1, 2)
        .contiguous()
        .view({b * n, d});
  };
  const at::Tensor q = rows(q_in), k = rows(k_in);
  const auto longs = q.options().dtype(at::kLong);
  at::Generator gen = seeded_generator(q.device(), seed);
  // Random initialisation: kk distinct positions per query, uniform over the subsets as the
  // kernel's partial shuffle, by Floyd's method (step s draws t in [0, n − kk + s] and takes
  // n − kk + s instead when t is held), which needs no pool of N per query.
  at::Tensor index = at::empty({b, n, kk}, longs), score;
  for (int64_t s = 0; s < kk; ++s) {
    const int64_t last = n - kk + s;
    at::Tensor t = at::randint(0, last + 1, {b, n, 1}, gen, longs);
    if (s > 0) t.masked_fill_((index.narrow(2, 0, s) == t).any(2, /*keepdim=*/true), last);
    index.narrow(2, s, 1).copy_(t);
  }
  std::tie(score, index) = keep_best(score_candidates(q, k, index), index, kk);
  for (int64_t it = 0; it < iterations; ++it) {
    const int64_t dir = it % 2 == 0 ? -1 : 1;  // neighbours left/up, then right/down
    const at::Tensor grid = index.view({b, h, w, kk});
    const at::Tensor fresh =
        at::cat({propagated(grid, /*dim=*/2, dir), propagated(grid, /*dim=*/1, dir),
                 random_search(index, h, w, gen)},
                2);
    std::tie(score, index) = keep_best(at::cat({score, score_candidates(q, k, fresh)}, 2),
                                       at::cat({index, fresh}, 2), kk);
  }
  return index;
}

at::Tensor sparse_attention_gathered(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& indices) {
  const int64_t b = q.size(0), d = q.size(1), c = v.size(1), h = q.size(2), w = q.size(3), n = h * w;
  const int64_t kk = indices.size(2);
  const at::Tensor flat = indices.to(q.device()).reshape({b, n * kk});
  auto gather = [&](const at::Tensor& t, int64_t channels) {  // [B, C, N] at the indices → [B, N, kk, C]
    return t.reshape({b, channels, n}).gather(2, flat.unsqueeze(1).expand({b, channels, n * kk}))
        .reshape({b, channels, n, kk}).permute({0, 2, 3, 1});
  };
  const at::Tensor qf = q.reshape({b, d, n}).transpose(1, 2).unsqueeze(2);  // [B, N, 1, D]
  const at::Tensor weights = (gather(k, d) * qf).sum(-1).div(std::sqrt(static_cast<double>(d))).softmax(-1);
  return (weights.unsqueeze(-1) * gather(v, c)).sum(2).transpose(1, 2).reshape({b, c, h, w});
}

at::Tensor sparse_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& indices) {
  if (!q.device().is_cpu()) return sparse_attention_gathered(q, k, v, indices);
  const int64_t b = q.size(0), d = q.size(1), c = v.size(1), h = q.size(2), w = q.size(3), n = h * w;
  TORCH_CHECK(indices.dim() == 3 && indices.size(0) == b && indices.size(1) == n,
              "sparse attention: indices must be [B, N, k], got ", indices.sizes());
  TORCH_CHECK(indices.numel() == 0 || (indices.min().item<int64_t>() >= 0 && indices.max().item<int64_t>() < n),
              "sparse attention: indices must lie in [0, ", n, ")");
  TORCH_CHECK(q.scalar_type() == v.scalar_type() && k.scalar_type() == v.scalar_type(),
              "sparse attention: q, k and v must share a dtype");
  auto rows = [&](const at::Tensor& t, int64_t channels) { return t.reshape({b, channels, n}).transpose(1, 2).contiguous(); };
  const at::Tensor out = SparseAttentionFunction::apply(rows(q, d), rows(k, d), rows(v, c), indices.to(at::kLong).contiguous());
  return out.transpose(1, 2).reshape({b, c, h, w});
}

}  // namespace functional

void ScramOptions::check() const {
  TORCH_CHECK(channels() > 0, "scram: channels must be positive, got ", channels());
  TORCH_CHECK(topk() >= 1, "scram: topk must be at least 1, got ", topk());
  TORCH_CHECK(iterations() >= 0, "scram: iterations must not be negative, got ", iterations());
  TORCH_CHECK(reduction() > 0 && channels() / reduction() >= 1, "scram: reduction must be in [1, channels], got ",
              reduction());
}

ScramImpl::ScramImpl(const ScramOptions& options_) : options(options_) { reset(); }

void ScramImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  const int64_t inner = c / options.reduction();
  query_ = register_module("query", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, inner, 1)));
  key_ = register_module("key", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, inner, 1)));
  value_ = register_module("value", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 1)));
  gamma = register_parameter("gamma", torch::full({1}, options.zero_init() ? 0.0 : 1.0));
}

torch::Tensor ScramImpl::forward(const torch::Tensor& x) {
  const at::Tensor v = value_(x);
  const uint64_t seed = static_cast<uint64_t>(
      is_training() ? at::randint(1LL << 62, {1}, at::kLong).item<int64_t>() : options.eval_seed());
  at::Tensor out;
  {
    // Under autocast, q and k, the search and the softmax stay in the parameters' type (the
    // CPU kernels take float or double): which k keys are found jumps with q·k, and bf16
    // projections reorder near ties, so 7×9 maps in bf16 found other keys than in fp32 and the
    // projections' gradients moved 5-12% (under 1% with every key found). The value projection,
    // C² of the three projections' 1.25·C² multiply-adds per pixel, keeps the lower precision.
    AutocastDisabled in_float;
    const at::ScalarType type = gamma.scalar_type();
    const at::Tensor xf = x.to(type), q = query_(xf), k = key_(xf);
    const at::Tensor indices =
        x.device().is_cpu()
            ? functional::patchmatch_topk(q, k, options.topk(), options.iterations(), seed)
            : functional::patchmatch_topk_tensor(q, k, options.topk(), options.iterations(), seed);
    out = functional::sparse_attention(q, k, v.to(type), indices);
  }
  return x + gamma * out;
}

int64_t ScramImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], h = shape[2], w = shape[3], n = h * w;
  const int64_t d = c / options.reduction(), kk = std::min(options.topk(), n);
  const int64_t search = n * patchmatch_evaluations(h, w, kk, options.iterations()) * d;
  return b * (n * c * (2 * d + c) + search + n * kk * (d + c));
}

}  // namespace attnseg
