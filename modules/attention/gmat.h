// GMAT: Global Memory Augmentation for Transformers (Gupta and Berant, arXiv:2006.03274), as
// ag1988/gmat, on the map: `memory` learned global memory slots sit beside the tokens. Every
// slot reads every slot and every token (the memory is written), and every token reads the
// window×window pixels around it (the sparse local attention) and every slot (the memory is
// read). The slots' queries, keys and values are learned per head (a learned memory embedding
// through learned projections, folded into one parameter each). As in the reference's
// sequential variant (the memory processed before the sequence reads it), the memory is written
// first and the tokens read the written memory.
//
// Cost: N·(window² + M) + M·(M + N): linear in N.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

struct GmatOptions {
  explicit GmatOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, memory) = 8;  // slots
  TORCH_ARG(int64_t, window) = 7;  // side of the local window, odd

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("memory", memory_);
    field("window", window_);
  }
  void check() const;
};

class GmatImpl : public PatternedBlockImpl {
 public:
  explicit GmatImpl(const GmatOptions& options);
  void reset();

  // The tokens' pattern: the window, then the slots (keys N…N+M−1).
  Pattern build_pattern(int64_t height, int64_t width) const override;
  // A written slot has read every token.
  std::vector<std::vector<int64_t>> extra_key_sources(int64_t height, int64_t width) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;
  // With keep_written(true), each forward keeps its written memory, detached, for written()
  // ([B, h, M, d]): a diagnostic, off by default so that no forward holds on to a tensor of the
  // one before (bench's peak-memory scope would see it freed).
  void keep_written(bool keep) { keep_written_ = keep; }
  const at::Tensor& written() const { return written_; }

  GmatOptions options;
  at::Tensor memory_q, memory_k, memory_v;  // [h, M, d]

 private:
  bool keep_written_ = false;
  at::Tensor written_;
};
TORCH_MODULE(Gmat);

}  // namespace attnseg
