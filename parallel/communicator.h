#pragma once
// Collective operations over tensors, one interface for every transport: LocalCommunicator
// (one process), MpiCommunicator (CPU tensors), NcclCommunicator (CUDA tensors). Collectives
// are blocking from the caller's point of view (NCCL: ordered on the current CUDA stream).
//
// Legend: W ranks in this communicator; rows = slices along dim 0.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace some::parallel {

// A collective in flight; wait() completes it.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;  // "local", "mpi", "nccl"

  // In-place elementwise sum over all ranks (float32 / float64 / int64).
  virtual void allreduce_sum(torch::Tensor& t) = 0;
  // The same, started now and completed by the returned Work's wait() (t must stay alive and
  // untouched until then). Transports without a non-blocking form complete it at once.
  virtual std::unique_ptr<Work> allreduce_sum_async(torch::Tensor& t) {
    allreduce_sum(t);
    return std::make_unique<Work>();
  }
  // All-to-all-v along dim 0: send_rows[p] rows of `input` (in order) go to rank p;
  // recv_rows[p] rows arrive from rank p. Returns (sum recv_rows, *input.shape[1:]).
  virtual torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                                   const std::vector<int64_t>& recv_rows) = 0;
  // In-place copy of root's tensor to every rank (same shape and dtype everywhere).
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  // (W, *t.shape): every rank's tensor, stacked in rank order (same shape everywhere).
  virtual torch::Tensor allgather(const torch::Tensor& t) = 0;
  virtual void barrier() = 0;
};

// World size 1: every collective is the identity.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "local"; }
  void allreduce_sum(torch::Tensor&) override {}
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>&,
                           const std::vector<int64_t>&) override {
    return input;
  }
  void broadcast(torch::Tensor&, int) override {}
  torch::Tensor allgather(const torch::Tensor& t) override { return t.unsqueeze(0); }
  void barrier() override {}
};

// Strings over a communicator (run directory names, error reasons).
std::string broadcast_string(Communicator& comm, const std::string& s, int root);
// Every rank's string, in rank order (lengths may differ).
std::vector<std::string> allgather_strings(Communicator& comm, const std::string& s);

}  // namespace some::parallel
