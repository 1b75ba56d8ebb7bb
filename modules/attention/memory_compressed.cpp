#include "attention/memory_compressed.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace attnseg {

namespace functional {
at::Tensor strided_memory(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t s) {
  const int64_t b = x.size(0), h = x.size(1), n = x.size(2), d = x.size(3);
  const int64_t padded = (n + s - 1) / s * s;
  at::Tensor channels = x.transpose(2, 3).reshape({b, h * d, n});  // [B, h·d, N]
  if (padded > n) channels = at::constant_pad_nd(channels, {0, padded - n});
  const at::Tensor out = at::conv1d(channels, weight.to(x.scalar_type()), bias.to(x.scalar_type()), at::IntArrayRef{s},
                                    at::IntArrayRef{0}, at::IntArrayRef{1}, h);
  return out.view({b, h, d, padded / s}).transpose(2, 3);
}

at::Tensor local_block_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t block,
                                 const at::Tensor& key_valid) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3), blocks = n / block;
  auto split = [&](const at::Tensor& t) { return t.reshape({b, h, blocks, block, t.size(3)}); };
  at::Tensor scores = at::matmul(split(q) * (1.0 / std::sqrt(static_cast<double>(d))), split(k).transpose(-2, -1));
  if (key_valid.defined()) {
    const at::Tensor padded_key = key_valid.logical_not().view({blocks, 1, block});
    scores = scores.masked_fill(padded_key, -std::numeric_limits<double>::infinity());
  }
  return at::matmul(at::softmax(scores, -1), split(v)).reshape({b, h, n, v.size(3)});
}

at::Tensor memory_attention(const at::Tensor& q, const at::Tensor& memory_k, const at::Tensor& memory_v,
                            int64_t valid_slots) {
  const int64_t d = q.size(3), slots = memory_k.size(2);
  at::Tensor scores = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(d))), memory_k.transpose(-2, -1));
  if (valid_slots < slots) {
    const at::Tensor empty = at::arange(slots, at::TensorOptions(at::kLong).device(q.device())) >= valid_slots;
    scores = scores.masked_fill(empty, -std::numeric_limits<double>::infinity());
  }
  return at::matmul(at::softmax(scores, -1), memory_v);
}
}  // namespace functional

void MemoryCompressedOptions::check() const {
  host_.check("memory_compressed");
  TORCH_CHECK(compression_ >= 1, "memory_compressed: compression must be at least 1, got ", compression_);
  TORCH_CHECK(block_ >= 1, "memory_compressed: block must be at least 1, got ", block_);
  TORCH_CHECK(local_heads_ >= 0 && local_heads_ <= host_.heads(),
              "memory_compressed: local_heads must be between 0 and heads (", host_.heads(), "), got ", local_heads_);
}

MemoryCompressedImpl::MemoryCompressedImpl(const MemoryCompressedOptions& options_) : options(options_) {
  reset();
}

void MemoryCompressedImpl::reset() {
  options.check();
  reset_host(options.host());
  const int64_t memory_heads = options.host().heads() - options.local_heads();
  if (memory_heads == 0) return;
  const int64_t d = options.host().head_width(), s = options.compression();
  // nn.Conv1d's initialisation, as the reference builds it: uniform in ±1/√(fan_in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(d * s));
  compress_weight = register_parameter("compress_weight", torch::rand({memory_heads * d, d, s}) * 2 * bound - bound);
  compress_bias = register_parameter("compress_bias", torch::rand({memory_heads * d}) * 2 * bound - bound);
}

at::Tensor MemoryCompressedImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const TokenGrid& grid) {
  const int64_t local = options.local_heads(), memory = q.size(1) - local, s = options.compression();
  std::vector<at::Tensor> outputs;
  if (local > 0) {
    outputs.push_back(functional::local_block_attention(q.narrow(1, 0, local), k.narrow(1, 0, local),
                                                        v.narrow(1, 0, local), options.block(), grid.key_valid));
  }
  if (memory > 0) {
    at::Tensor mk = k.narrow(1, local, memory), mv = v.narrow(1, local, memory);
    if (grid.key_valid.defined()) {
      const at::Tensor real = grid.key_valid.view({-1, 1}).to(k.scalar_type());
      mk = mk * real;
      mv = mv * real;
    }
    const int64_t valid_slots = (grid.length() + s - 1) / s;
    outputs.push_back(functional::memory_attention(
        q.narrow(1, local, memory), functional::strided_memory(mk, compress_weight, compress_bias, s),
        functional::strided_memory(mv, compress_weight, compress_bias, s), valid_slots));
  }
  return outputs.size() == 1 ? outputs[0] : at::cat(outputs, 1);
}

int64_t MemoryCompressedImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t d = options.host().head_width(), s = options.compression(), block = options.block();
  const int64_t local = options.local_heads(), memory = options.host().heads() - local;
  const int64_t slots = (n + s - 1) / s;
  // local: scores and weighted sum inside each block; memory: the convolution of keys and of
  // values (slots·d outputs of d·s products each), then scores and weighted sum over the slots.
  return b * local * n * block * d * 2 + b * memory * (2 * slots * d * d * s + 2 * n * slots * d);
}

}  // namespace attnseg
