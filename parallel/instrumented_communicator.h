#pragma once
// A Communicator decorator that forwards every collective to a wrapped communicator and counts,
// per operation kind: calls, bytes and host wall time (steady_clock around the call). For the
// scaling benchmark (bench/bench_parallel.cpp); production code never needs it.
//
// Bytes are what THIS rank puts into the collective:
//   all_to_all  rows sent to other ranks x row bytes (`bytes`); rows this rank keeps for itself
//               are counted apart (`self_bytes`) since they never leave the process
//   allreduce   the buffer (payload) size; a ring moves 2 (W-1)/W of it per rank on the wire
//   broadcast   the buffer size (on every rank, root or not)
//   allgather   this rank's contribution
//   barrier     0
// Time is host wall time of the call; an async allreduce counts the time of its start plus the
// time of its Work::wait() (a Work must not outlive this communicator). With NCCL (stream-ordered)
// host time measures the launch, not the transfer, unless the caller synchronises.
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace some::parallel {

enum class CommOp : int { all_to_all = 0, allreduce, broadcast, allgather, barrier };
inline constexpr int kNumCommOps = 5;
const char* comm_op_name(CommOp op);

struct CommOpStats {
  int64_t calls = 0;
  int64_t async_calls = 0;   // allreduce_sum_async (included in calls)
  int64_t bytes = 0;         // see the table above
  int64_t self_bytes = 0;    // all_to_all only: rows kept by this rank
  double seconds = 0;
};

// One call, when the call log is on: lets a caller classify calls (e.g. allreduces by size).
struct CommCall {
  CommOp op;
  bool async = false;
  int64_t numel = 0;
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  int64_t bytes = 0, self_bytes = 0;
  double seconds = 0;
};

class InstrumentedCommunicator final : public Communicator {
 public:
  explicit InstrumentedCommunicator(std::shared_ptr<Communicator> inner);

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string name() const override { return inner_->name(); }
  void allreduce_sum(torch::Tensor& t) override;
  std::unique_ptr<Work> allreduce_sum_async(torch::Tensor& t) override;
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override;
  void broadcast(torch::Tensor& t, int root) override;
  torch::Tensor allgather(const torch::Tensor& t) override;
  void barrier() override;

  CommOpStats stats(CommOp op) const;
  std::vector<CommCall> calls() const;       // empty unless the call log is on
  void set_call_log(bool on);
  void reset();                               // zero every counter and clear the call log

 private:
  friend class InstrumentedWork;
  using Clock = std::chrono::steady_clock;
  // Adds one finished call (or part of one); returns its index in the call log, or -1.
  int64_t record(CommOp op, bool async, const torch::Tensor* t, int64_t bytes, int64_t self_bytes, double seconds);
  void add_wait_time(int64_t call_index, uint64_t generation, double seconds);

  std::shared_ptr<Communicator> inner_;
  mutable std::mutex mutex_;  // gradient hooks may start allreduces from autograd threads
  std::array<CommOpStats, kNumCommOps> stats_{};
  bool log_calls_ = false;
  std::vector<CommCall> calls_;
  uint64_t generation_ = 0;   // bumped by reset(): a Work from before it adds no time after it
};

}  // namespace some::parallel
