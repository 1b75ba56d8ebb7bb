#include "attention/compressive.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnseg {

namespace functional {
namespace {

// softmax(q kᵀ/√d) v with the keys where `key_mask` ([L] bool) is false left out.
at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& key_mask) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor scores = at::matmul(q * scale, k.transpose(-2, -1));
  if (key_mask.defined())
    scores = scores.masked_fill(key_mask.logical_not(), -std::numeric_limits<double>::infinity());
  return at::matmul(at::softmax(scores, -1), v);
}

// [a; b] along the tokens, where either may be undefined (empty).
at::Tensor join(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return at::cat({a.to(b.scalar_type()), b}, 2);
}

// The last `length` tokens of x (undefined when length is 0).
at::Tensor newest(const at::Tensor& x, int64_t length) {
  if (length == 0 || !x.defined()) return {};
  return x.size(2) <= length ? x : x.narrow(2, x.size(2) - length, length);
}

}  // namespace

at::Tensor compress_memory(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t b = x.size(0), h = x.size(1), l = x.size(2), d = x.size(3), c = weight.size(2);
  at::Tensor channels = x.transpose(2, 3).reshape({b, h * d, l});
  if (l % c != 0) channels = at::constant_pad_nd(channels, {c - l % c, 0});
  const at::Tensor y =
      at::conv1d(channels, weight.to(x.scalar_type()), bias.to(x.scalar_type()), {c});
  return y.view({b, h, d, y.size(2)}).transpose(2, 3);
}

at::Tensor compressive_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_valid, CompressiveMemory& memory,
                                 const CompressiveSettings& settings, const at::Tensor& k_weight,
                                 const at::Tensor& k_bias, const at::Tensor& v_weight,
                                 const at::Tensor& v_bias, bool keep_last,
                                 std::vector<SegmentMemory>* used, at::Tensor* aux_loss) {
  const int64_t n = q.size(2), segment = settings.segment, segments = n / segment;
  TORCH_CHECK(n % segment == 0, "compressive: ", n, " tokens are not a multiple of the segment (",
              segment, ")");
  const int64_t real = key_valid.defined() ? key_valid.sum().item<int64_t>() : n;
  std::vector<at::Tensor> outputs, losses;
  for (int64_t s = 0; s < segments; ++s) {
    const int64_t start = s * segment, fresh = std::min(segment, real - start);
    const at::Tensor qs = q.narrow(2, start, segment), ks = k.narrow(2, start, segment),
                     vs = v.narrow(2, start, segment);
    const int64_t remembered = memory.compressed_length() + memory.length();
    at::Tensor mask;  // the memories hold real tokens only; padding sits in the last segment
    if (fresh < segment) {
      mask = at::cat(
          {at::ones({remembered}, key_valid.options()), key_valid.narrow(0, start, segment)});
    }
    const at::Tensor keys = join(join(memory.ck, memory.k), ks),
                     values = join(join(memory.cv, memory.v), vs);
    outputs.push_back(masked_attention(qs, keys, values, mask));
    if (used) used->push_back({memory.length(), memory.compressed_length()});
    if (s + 1 == segments && !keep_last) break;

    // Transformer-XL's stop-gradient: the memory holds values, not a path back into the past.
    const at::Tensor mk = join(memory.k, ks.narrow(2, 0, fresh).detach()),
                     mv = join(memory.v, vs.narrow(2, 0, fresh).detach());
    const int64_t evicted = std::max<int64_t>(0, mk.size(2) - settings.mem_len);
    memory.k = newest(mk, settings.mem_len);
    memory.v = newest(mv, settings.mem_len);
    if (evicted == 0 || settings.cmem_len == 0) continue;
    const at::Tensor old_k = mk.narrow(2, 0, evicted), old_v = mv.narrow(2, 0, evicted);
    const at::Tensor ck = compress_memory(old_k, k_weight, k_bias),
                     cv = compress_memory(old_v, v_weight, v_bias);
    if (aux_loss) {
      // Attention reconstruction: the segment's queries read the old memory and its compression
      // alike; queries and old memory detached, so the loss trains f_c alone.
      const at::Tensor reader = qs.narrow(2, 0, fresh).detach();
      losses.push_back(at::mse_loss(masked_attention(reader, ck, cv, {}).to(at::kFloat),
                                    masked_attention(reader, old_k, old_v, {}).to(at::kFloat)));
    }
    memory.ck = newest(join(memory.ck, ck), settings.cmem_len);
    memory.cv = newest(join(memory.cv, cv), settings.cmem_len);
  }
  if (aux_loss) *aux_loss = losses.empty() ? at::Tensor() : at::stack(losses).mean();
  return at::cat(outputs, 2);
}
}  // namespace functional

void CompressiveOptions::check() const {
  host_.check("compressive");
  TORCH_CHECK(segment_ >= 1, "compressive: segment must be at least 1 token, got ", segment_);
  TORCH_CHECK(mem_len_ >= 0, "compressive: mem_len must be 0 or more tokens, got ", mem_len_);
  TORCH_CHECK(cmem_len_ >= 0, "compressive: cmem_len must be 0 or more slots, got ", cmem_len_);
  TORCH_CHECK(compression_ >= 1, "compressive: compression must be at least 1, got ", compression_);
}

CompressiveImpl::CompressiveImpl(const CompressiveOptions& options_) : options(options_) {
  reset();
}

void CompressiveImpl::reset() {
  options.check();
  reset_host(options.host());
  const int64_t inner = options.host().inner(), c = options.compression();
  // torch.nn.Conv1d's default initialisation, as the reference's ConvCompress gets it.
  const double bound = 1.0 / std::sqrt(static_cast<double>(inner * c));
  auto uniform = [&](std::vector<int64_t> shape) {
    return torch::empty(shape).uniform_(-bound, bound);
  };
  k_weight = register_parameter("compress_k_weight", uniform({inner, inner, c}));
  k_bias = register_parameter("compress_k_bias", uniform({inner}));
  v_weight = register_parameter("compress_v_weight", uniform({inner, inner, c}));
  v_bias = register_parameter("compress_v_bias", uniform({inner}));
  reset_temporal();
}

void CompressiveImpl::set_temporal(bool on) {
  temporal_ = on;
  if (!on) reset_temporal();
}

void CompressiveImpl::reset_temporal() {
  memory_ = {};
}

at::Tensor CompressiveImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const TokenGrid& grid) {
  functional::CompressiveMemory memory;
  if (temporal_ && memory_.length() + memory_.compressed_length() > 0) {
    const int64_t held = memory_.length() > 0 ? memory_.k.size(0) : memory_.ck.size(0);
    TORCH_CHECK(held == q.size(0), "compressive: the temporal memory holds a batch of ", held,
                " but this frame has ", q.size(0), "; call reset_temporal() before a new video");
    auto here = [&](const at::Tensor& t) { return t.defined() ? t.to(q.device()) : t; };
    memory = {here(memory_.k), here(memory_.v), here(memory_.ck), here(memory_.cv)};
  }
  const functional::CompressiveSettings settings{options.segment(), options.mem_len(),
                                                 options.cmem_len(), options.compression()};
  last_use_.clear();
  at::Tensor aux;
  const at::Tensor out = functional::compressive_attention(
      q, k, v, grid.key_valid, memory, settings, k_weight, k_bias, v_weight, v_bias,
      /*keep_last=*/temporal_, &last_use_, is_training() ? &aux : nullptr);
  aux_loss_ = aux;
  if (temporal_) {
    auto kept = [](const at::Tensor& t) { return t.defined() ? t.detach() : t; };
    memory_ = {kept(memory.k), kept(memory.v), kept(memory.ck), kept(memory.cv)};
  }
  return out;
}

int64_t CompressiveImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width(), inner = h * d;
  const int64_t segment = options.segment(), c = options.compression();
  int64_t macs = 0, memory = 0, compressed = 0;
  for (int64_t s = 0; s < n / segment; ++s) {
    macs +=
        2 * b * h * segment * (compressed + memory + segment) * d;  // scores and the weighted sum
    if (s + 1 == n / segment) break;
    const int64_t evicted = std::max<int64_t>(0, memory + segment - options.mem_len());
    memory = std::min(memory + segment, options.mem_len());
    if (evicted == 0 || options.cmem_len() == 0) continue;
    const int64_t slots = (evicted + c - 1) / c;
    macs += 2 * b * slots * inner * inner * c;  // f_c on keys and on values
    compressed = std::min(compressed + slots, options.cmem_len());
  }
  return macs;
}

}  // namespace attnseg
