#pragma once
// Averages the gradients of replicated (data-parallel) parameters over all ranks, packed into
// flat buckets so a step sends a few large messages instead of one per tensor. With overlap,
// a bucket's allreduce starts during the last backward of the step, as soon as every gradient
// in it is final (tensor hooks), and finish() only waits for what is still in flight.
#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "parallel/communicator.h"

namespace some::parallel {

class GradientAllreduce {
 public:
  GradientAllreduce(std::vector<torch::Tensor> params, Communicator& comm, bool overlap = true,
                    int64_t bucket_bytes = 4 << 20);
  ~GradientAllreduce();
  GradientAllreduce(const GradientAllreduce&) = delete;
  GradientAllreduce& operator=(const GradientAllreduce&) = delete;

  // Call before the last backward of a step: its gradients are the final ones.
  void expect_final_backward();
  // grad <- (sum over ranks of grad) / W for every parameter; a missing grad counts as zero.
  void finish();
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  int64_t buckets_started_in_backward() const { return started_in_backward_; }

 private:
  struct Bucket {
    std::vector<torch::Tensor> params;
    std::vector<int64_t> offsets;
    torch::Tensor flat;             // staging buffer, summed in place
    size_t ready = 0;
    std::unique_ptr<Work> work;     // in flight when set
  };
  void on_final_grad(size_t bucket, size_t index, const torch::Tensor& grad);
  void start(Bucket& b);

  std::vector<Bucket> buckets_;
  Communicator& comm_;
  bool armed_ = false;
  int64_t started_in_backward_ = 0;
  std::vector<std::pair<torch::Tensor, unsigned>> hooks_;
};

}  // namespace some::parallel
