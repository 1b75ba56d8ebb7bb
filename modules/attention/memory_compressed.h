// Generating Wikipedia by Summarizing Long Sequences (Liu et al., arXiv:1801.10198), its two
// attention layers in one block, as lucidrains/memory-compressed-attention compresses: the
// paper alternates "local attention" layers (the sequence cut into blocks of `block` tokens,
// each attending within its block) with "memory-compressed attention" layers (keys and values
// shortened by a strided convolution, kernel = stride = `compression`, before full attention).
// Here the heads are split instead of the layers: the first `local_heads` heads attend within
// their block, the others to the compressed memory, and the host's output projection mixes
// both; so each layer sees detail and context, and each mechanism can be isolated (local_heads
// = heads or 0). On a map the tokens go in tile order by default, so that a block and a
// compression window are 2-D neighbourhoods. The host pads the tokens to a multiple of
// `block`; padded keys are masked in the local blocks, zeroed before the compression (as the
// reference pads a partial last window with zeros) and the windows holding no real token are
// masked, so the memory has ceil(N/s) keys. No parameter depends on the map size.
#pragma once

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// Strided convolution of x [B, h, N, d] along the tokens, per head (groups = h), the sequence
// zero-padded at the end to a multiple of s: [B, h, ceil(N/s), d]. weight [h·d, d, s], bias [h·d].
at::Tensor strided_memory(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t s);
// out_i = Σ_{j in i's block, valid} softmax_j(q_i·k_j/√d) v_j, blocks of `block` consecutive
// tokens; N a multiple of block; key_valid [N] bool or undefined (all valid).
at::Tensor local_block_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t block,
                                 const at::Tensor& key_valid);
// out_i = Σ_m softmax_m(q_i·k̂_m/√d) v̂_m over the memory slots m < valid_slots (k̂, v̂ [B, h, L, d]).
at::Tensor memory_attention(const at::Tensor& q, const at::Tensor& memory_k, const at::Tensor& memory_v,
                            int64_t valid_slots);
}  // namespace functional

struct MemoryCompressedOptions {
  explicit MemoryCompressedOptions(int64_t channels) : host_(channels) { host_.order("tiles"); }
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, compression) = 3;  // kernel and stride of the memory's convolution
  TORCH_ARG(int64_t, block) = 16;       // tokens per local block (a 4×4 tile in tile order)
  TORCH_ARG(int64_t, local_heads) = 2;  // heads that attend within their block; the rest to memory

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("compression", compression_);
    field("block", block_);
    field("local_heads", local_heads_);
  }
  void check() const;
};

class MemoryCompressedImpl : public TokenHostImpl {
 public:
  explicit MemoryCompressedImpl(const MemoryCompressedOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  int64_t token_multiple() const override { return options.block(); }

  MemoryCompressedOptions options;
  // The compression shared by keys and values (the reference's one ConvCompress):
  // [memory heads · d, d, s] and [memory heads · d]; undefined when every head is local.
  at::Tensor compress_weight, compress_bias;
};
TORCH_MODULE(MemoryCompressed);

}  // namespace attnseg
