#pragma once
// NCCL transport for CUDA tensors (built only with SOME_WITH_CUDA). The communicator is
// bootstrapped over another communicator of the same ranks (rank 0's ncclUniqueId is broadcast
// by it: MPI in a job, the local one for a single process); every collective is enqueued on the current CUDA stream of the communicator's
// device and is therefore ordered with the compute around it. Every NCCL and CUDA call is
// checked (SOME_CHECK_NCCL / SOME_CHECK_CUDA name call, file and line) and throws CallError.
#include <string>
#include <vector>

#include <torch/torch.h>

#include "parallel/communicator.h"

// nccl.h stays out of this header: ncclComm_t is `struct ncclComm*`.
struct ncclComm;

namespace some::parallel {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over the ranks of `bootstrap` (same rank numbers); `device` is this rank's GPU.
  // The bootstrap communicator is only used inside the constructor.
  NcclCommunicator(Communicator& bootstrap, int device);
  ~NcclCommunicator() override;  // ncclCommDestroy (ncclCommAbort after an asynchronous error)
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  int device() const { return device_; }

  // float32 / float64 / int64 / int32 / bfloat16 / float16, contiguous, on device().
  void allreduce_sum(torch::Tensor& t) override;
  // Grouped ncclSend / ncclRecv of whole rows (any dtype, as bytes).
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override;
  void broadcast(torch::Tensor& t, int root) override;
  torch::Tensor allgather(const torch::Tensor& t) override;
  // A one-element allreduce, then the stream is waited on (polling ncclCommGetAsyncError, so a
  // failed peer ends in a CallError, and the communicator aborted, rather than a hang): all
  // earlier GPU work on the stream is complete when it returns.
  void barrier() override;

 private:
  void require_on_device(const torch::Tensor& t, const char* what) const;
  void wait_stream();  // blocks until the current stream is idle; throws on NCCL async errors

  ncclComm* comm_ = nullptr;
  int rank_ = 0, size_ = 1, device_ = 0;
  torch::Tensor barrier_scratch_;  // one float32 on device_, allocated on first barrier()
};

}  // namespace some::parallel
