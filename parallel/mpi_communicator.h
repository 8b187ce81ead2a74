#pragma once
// MPI transport for CPU tensors, and the process-level MPI lifetime. Every MPI call is checked
// (SOME_CHECK_MPI names call, file and line).
#include <memory>

#include <mpi.h>

#include "common/check.h"
#include "parallel/communicator.h"

namespace some::parallel {
// "MPI_ERR_TRUNCATE: message truncated (error code 15)": MPI's own words for a return code.
std::string mpi_error_string(int code);
}  // namespace some::parallel

#define SOME_CHECK_MPI(call)                                                                 \
  do {                                                                                       \
    int some_mpi_rc_ = (call);                                                               \
    if (some_mpi_rc_ != MPI_SUCCESS) {                                                       \
      ::some::detail::call_failed("MPI", #call, __FILE__, __LINE__,                          \
                                  ::some::parallel::mpi_error_string(some_mpi_rc_));         \
    }                                                                                        \
  } while (0)

namespace some::parallel {

// MPI_Init_thread / MPI_Finalize for the lifetime of main(), only when the process was started
// by an MPI launcher (mpirun, srun --mpi=pmix): a plain `some train` stays a plain process.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  bool active() const { return active_; }
  static bool launched_by_mpi();  // environment of mpirun / srun with PMI or PMIx
  // Ends every rank of the job now: the failing rank calls this after logging its reason.
  [[noreturn]] static void abort(int code);

 private:
  bool active_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm);  // duplicates `comm`; the duplicate is freed on destruction
  ~MpiCommunicator() override;
  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  void allreduce_sum(torch::Tensor& t) override;
  std::unique_ptr<Work> allreduce_sum_async(torch::Tensor& t) override;  // MPI_Iallreduce
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                           const std::vector<int64_t>& recv_rows) override;
  void broadcast(torch::Tensor& t, int root) override;
  torch::Tensor allgather(const torch::Tensor& t) override;
  void barrier() override;
  // The ranks with the same `color` form one communicator, ordered by world rank.
  std::shared_ptr<MpiCommunicator> split(int color) const;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace some::parallel
