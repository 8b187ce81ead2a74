#pragma once
// Collective operations over tensors. The single-process implementation is here; MPI (CPU
// tensors) and NCCL (CUDA tensors) implementations share this interface (issue 4).
#include <torch/torch.h>

namespace some::parallel {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual void allreduce_sum(torch::Tensor& t) = 0;  // in place
  virtual void barrier() = 0;
};

// World size 1: every collective is the identity.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void allreduce_sum(torch::Tensor&) override {}
  void barrier() override {}
};

}  // namespace some::parallel
