#pragma once
// Averages the gradients of replicated (data-parallel) parameters over all ranks, packed into
// flat buckets so a step sends a few large messages instead of one per tensor.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "parallel/communicator.h"

namespace some::parallel {

class GradientAllreduce {
 public:
  GradientAllreduce(std::vector<torch::Tensor> params, Communicator& comm, int64_t bucket_bytes = 16 << 20);
  // grad <- (sum over ranks of grad) / W for every parameter; a missing grad counts as zero.
  void run();
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  std::vector<std::vector<torch::Tensor>> buckets_;
  Communicator& comm_;
};

}  // namespace some::parallel
