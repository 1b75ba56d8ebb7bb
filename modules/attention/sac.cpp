#include "attention/sac.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

#include "attention/functional.h"
#include "attention/hashing.h"
#include "core/device.h"

namespace attnseg {

namespace functional {
namespace {

// x [B, h, N, c] at the tokens `index` [B, h, ...] → [B, h, ..., c].
at::Tensor tokens_at(const at::Tensor& x, const at::Tensor& index) {
  std::vector<int64_t> shape = index.sizes().vec();
  shape.push_back(x.size(3));
  return gather_tokens(x, index.flatten(2)).view(shape);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> sac_edges(const at::Tensor& e, const at::Tensor& key_valid,
                                            const at::Tensor& rotations, int64_t chunk, int64_t k) {
  const int64_t b = e.size(0), h = e.size(1), n = e.size(2), r = e.size(3), chunks = n / chunk;
  TORCH_CHECK(n % chunk == 0, "sac: ", n, " tokens are not a multiple of the chunk (", chunk, ")");
  // Angular LSH: the bucket of x is the argmax over [xR, −xR]; padded tokens sort after all.
  const at::Tensor rotated = at::matmul(e, rotations.unsqueeze(0).to(e.scalar_type()));
  at::Tensor bucket = at::cat({rotated, rotated.neg()}, -1).argmax(-1);  // [B, h, N]
  if (key_valid.defined())
    bucket = bucket.masked_fill(key_valid.logical_not(), 2 * rotations.size(2));
  // Sorted by bucket, then by position: deterministic, and neighbours stay together in a bucket.
  const auto [order, inverse] = sort_by_bucket(bucket);
  const at::Tensor chunked = order.view({b, h, chunks, chunk});
  const at::Tensor candidates = chunks > 1 ? look_one_back(chunked, 2) : chunked;

  at::Tensor s = at::matmul(tokens_at(e, chunked), tokens_at(e, candidates).transpose(-2, -1)) /
                 std::sqrt(static_cast<double>(r));  // [B, h, chunks, chunk, candidates]
  if (key_valid.defined()) {
    const at::Tensor valid =
        key_valid.index_select(0, candidates.flatten()).view(candidates.sizes());
    s = s.masked_fill(valid.logical_not().unsqueeze(3), -std::numeric_limits<double>::infinity());
  }
  const auto [top, slot] = s.topk(k, -1);
  const at::Tensor partners = candidates.unsqueeze(3).expand(s.sizes()).gather(-1, slot);
  // From sorted order back to token order.
  return {gather_tokens(partners.reshape({b, h, n, k}), inverse),
          gather_tokens(top.reshape({b, h, n, k}), inverse)};
}

at::Tensor sac_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& edges, const at::Tensor& scores) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const at::Tensor keys = tokens_at(k, edges), values = tokens_at(v, edges);  // [B, h, N, k, d]
  const at::Tensor logits =
      at::matmul((q * scale).unsqueeze(3), keys.transpose(-2, -1)).squeeze(3) + scores;
  return at::matmul(at::softmax(logits, -1).unsqueeze(3), values).squeeze(3);
}
}  // namespace functional

void SacOptions::check() const {
  host_.check("sac");
  TORCH_CHECK(k_ >= 1, "sac: k must be at least 1 partner, got ", k_);
  TORCH_CHECK(chunk_ >= 1, "sac: chunk must be at least 1 token, got ", chunk_);
  TORCH_CHECK(k_ <= chunk_, "sac: k (", k_, ") must not exceed chunk (", chunk_,
              "): a token's candidates are its chunk and the one before");
  TORCH_CHECK(buckets_ >= 2 && buckets_ % 2 == 0,
              "sac: buckets must be an even number of at least 2, got ", buckets_);
  TORCH_CHECK(edge_dim_ >= 1, "sac: edge_dim must be at least 1, got ", edge_dim_);
}

SacImpl::SacImpl(const SacOptions& options_) : options(options_) {
  reset();
}

void SacImpl::reset() {
  options.check();
  reset_host(options.host());
  const int64_t h = options.host().heads(), d = options.host().head_width(), r = options.edge_dim();
  edge_weight = register_parameter("edge_weight",
                                   torch::randn({h, d, r}) / std::sqrt(static_cast<double>(d)));
  rotations = register_buffer("rotations", torch::randn({h, r, options.buckets() / 2}));
}

at::Tensor SacImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) {
  // Hashing, sorting and top-k on bf16 values would flip buckets and edges: in float.
  AutocastDisabled in_float;
  const at::Tensor qf = functional::at_least_float(q), kf = functional::at_least_float(k),
                   vf = functional::at_least_float(v);
  const at::Tensor e = at::matmul(kf, edge_weight.unsqueeze(0));
  auto [edges, scores] =
      functional::sac_edges(e, grid.key_valid, rotations, options.chunk(), options.k());
  if (keep_edges_) last_edges_ = edges;
  return functional::sac_attention(qf, kf, vf, edges, scores);
}

int64_t SacImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width(), r = options.edge_dim();
  const int64_t candidates = (n / options.chunk() > 1 ? 2 : 1) * options.chunk();
  // the embeddings, their hash, the candidates' scores, then scores and sum over the k edges
  return b * h * n * (d * r + r * options.buckets() / 2 + candidates * r + 2 * options.k() * d);
}

}  // namespace attnseg
