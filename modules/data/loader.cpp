#include "data/loader.h"

#include <ATen/ATen.h>

#include <numeric>

namespace attnseg {

size_t sample_index(size_t dataset_size, uint64_t seed, int64_t position) {
  const int64_t n = static_cast<int64_t>(dataset_size);
  const int64_t epoch = position / n;
  // Fisher-Yates, truncated at the slot asked for: O(n) per call, cheap next to decoding.
  std::vector<size_t> order(dataset_size);
  std::iota(order.begin(), order.end(), 0);
  Rng rng{seed, 0x5a3d1e, static_cast<uint64_t>(epoch)};
  const int64_t slot = position % n;
  for (int64_t i = 0; i <= slot; ++i) {
    const int64_t j = rng.integer(i, n - 1);
    std::swap(order[i], order[j]);
  }
  return order[slot];
}

Batch make_train_batch(const FolderDataset& dataset, const TrainPipelineOptions& pipeline,
                       const Normalization& norm, int64_t batch_size, uint64_t seed,
                       int64_t iteration, int rank, int world_size) {
  TORCH_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "train batch: rank ", rank,
              " is not in a job of ", world_size);
  TORCH_CHECK(batch_size >= world_size, "train batch: a global batch of ", batch_size, " cannot be shared by ",
              world_size, " ranks");
  std::vector<at::Tensor> images, labels;
  const int64_t first = batch_size * rank / world_size, end = batch_size * (rank + 1) / world_size;
  for (int64_t j = first; j < end; ++j) {
    const int64_t position = iteration * batch_size + j;
    Sample sample = dataset.load(sample_index(dataset.size(), seed, position));
    Rng rng{seed, 0xa0c3, static_cast<uint64_t>(position)};
    apply_train_pipeline(sample, pipeline, rng);
    images.push_back(image_to_tensor(sample.image, norm));
    labels.push_back(mask_to_tensor(sample.mask));
  }
  return {at::stack(images), at::stack(labels)};
}

}  // namespace attnseg
