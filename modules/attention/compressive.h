// Compressive Transformers for Long-Range Sequence Modelling (Rae et al., arXiv:1911.05507), as
// lucidrains/compressive-transformer-pytorch, on the host's token order: the tokens are cut into
// segments of `segment` tokens processed in order; segment s attends to [compressed memory,
// memory, itself]. The memory holds the keys and values of the last `mem_len` tokens before the
// segment (stop-gradient, as Transformer-XL's); tokens it evicts are compressed by a learned
// strided 1-D convolution (kernel and stride `compression`, over the heads' channels) into at
// most `cmem_len` compressed slots. Inside a segment attention is not causal (a map has no
// reading direction); across segments it is: a token sees earlier rows only through memory.
//
// Within one forward pass the memories start empty. Temporal mode (set_temporal, for video, the
// demo): the first segment of a frame starts with the memories the previous frame left, detached,
// so a frame's output depends on the frames before it; reset_temporal() forgets them. The memories
// depend on the batch and the frame, so they are members, not registered buffers: a checkpoint
// never holds them and its parameter list is the same in either mode.
//
// The compression network learns from the paper's attention-reconstruction loss (aux_loss() in
// training mode: ‖attn(q, old memory) − attn(q, compressed old memory)‖², queries and old
// memory detached, so only the convolution learns from it) and also from the task loss through
// the compressed slots later segments of the same frame attend to (their input stays detached).
#pragma once

#include <utility>
#include <vector>

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// Keys and values of the memory [B, h, m, d] and of the compressed memory [B, h, cm, d]; all
// undefined when empty.
struct CompressiveMemory {
  at::Tensor k, v, ck, cv;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
  int64_t compressed_length() const { return ck.defined() ? ck.size(2) : 0; }
};

struct CompressiveSettings {
  int64_t segment = 24, mem_len = 24, cmem_len = 24, compression = 4;
};

// The lengths of memory and compressed memory one segment attended to.
struct SegmentMemory {
  int64_t memory = 0, compressed = 0;
};

// f_c: x [B, h, L, d] → [B, h, ⌈L/c⌉, d], a 1-D convolution over the h·d channels with kernel
// and stride c (weight [h·d, h·d, c], bias [h·d]); L is zero-padded at the oldest end to a
// multiple of c, as the reference pads.
at::Tensor compress_memory(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// Segment s: out_s = softmax(q_s [ck; mk; k_s]ᵀ / √d) [cv; mv; v_s], keys masked where
// key_valid (over the N tokens of q) is false; then the segment's real keys and values join the
// memory, the oldest beyond mem_len leave it for f_c, the compressed slots beyond cmem_len are
// dropped. `memory` is read at the start and holds what the last segment left at the end (the
// last segment's update is made only if `keep_last`). `used` receives each segment's lengths;
// `aux_loss`, when not null, the mean attention-reconstruction loss over the compressions made
// (undefined when none was). q, k, v: [B, h, N, d], N a multiple of the segment.
at::Tensor compressive_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_valid, CompressiveMemory& memory,
                                 const CompressiveSettings& settings, const at::Tensor& k_weight,
                                 const at::Tensor& k_bias, const at::Tensor& v_weight,
                                 const at::Tensor& v_bias, bool keep_last,
                                 std::vector<SegmentMemory>* used, at::Tensor* aux_loss);
}  // namespace functional

struct CompressiveOptions {
  explicit CompressiveOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  // On the trained 8×48 map in raster order a segment is half a row: a token sees its half
  // row, the half row before (memory) and the two rows before that at a quarter of the
  // resolution (24 slots of 4 tokens). Short enough that a small map (7×9) already compresses.
  TORCH_ARG(int64_t, segment) = 24;
  TORCH_ARG(int64_t, mem_len) = 24;
  TORCH_ARG(int64_t, cmem_len) = 24;
  TORCH_ARG(int64_t,
            compression) = 4;  // c: the rate the paper recommends (as the reference's default)

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("segment", segment_);
    field("mem_len", mem_len_);
    field("cmem_len", cmem_len_);
    field("compression", compression_);
  }
  void check() const;
};

class CompressiveImpl : public TokenHostImpl {
 public:
  explicit CompressiveImpl(const CompressiveOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const TokenGrid& grid) override;
  // The evaluation forward with temporal mode off (memories start empty, no update after the
  // last segment).
  int64_t core_macs(int64_t b, int64_t n) const override;
  int64_t token_multiple() const override { return options.segment(); }
  torch::Tensor aux_loss() const override { return aux_loss_; }

  // Video (AttentionBlockImpl's temporal mode, the demo's --temporal): with `on`, each forward
  // starts from the memories the last one left (detached); the batch size must stay the same
  // between frames. Turning it off forgets them, as reset_temporal() does.
  bool temporal_capable() const override { return true; }
  void set_temporal(bool on) override;
  bool temporal() const { return temporal_; }
  void reset_temporal() override;
  // The memory and compressed-memory lengths each segment of the last forward attended to.
  const std::vector<functional::SegmentMemory>& last_memory_use() const { return last_use_; }
  const functional::CompressiveMemory& memory() const { return memory_; }

  CompressiveOptions options;
  at::Tensor k_weight, k_bias, v_weight, v_bias;  // f_c for keys and for values

 private:
  bool temporal_ = false;
  functional::CompressiveMemory memory_;  // what the last temporal forward left
  std::vector<functional::SegmentMemory> last_use_;
  at::Tensor aux_loss_;
};
TORCH_MODULE(Compressive);

}  // namespace attnseg
