#pragma once
// Where this process sits in the rank grid (docs/design.md §5), built once from W and P and passed in:
// W ranks, expert-parallel groups of P consecutive ranks (rank r is in group r / P and holds
// experts [(r mod P) E/P, (r mod P + 1) E/P) of every SoME layer); dense weights are
// replicated on all W ranks, and each expert on the W/P ranks with the same ep rank (its
// replicas, which average the gradients of trainable experts).
#include <cstdint>
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace some::parallel {

class ParallelState {
 public:
  // world: all W ranks; ep: the P ranks of this rank's expert-parallel group; replicas: the W/P
  // ranks holding the same experts (may be null when W/P = 1 or P = 1: derived).
  ParallelState(std::shared_ptr<Communicator> world, std::shared_ptr<Communicator> ep,
                std::shared_ptr<Communicator> replicas = nullptr);
  static ParallelState single_process();
  // From MPI_COMM_WORLD (the process must run under an MPI launcher): P = expert_parallel.
  // With cuda_device >= 0 the transport is NCCL on that device (bootstrapped over MPI); this
  // needs a build with SOME_WITH_CUDA.
  static ParallelState from_mpi(int expert_parallel, int cuda_device = -1);

  int rank() const { return world_->rank(); }
  int world_size() const { return world_->world_size(); }
  int ep_size() const { return ep_->world_size(); }
  int ep_rank() const { return ep_->rank(); }
  int ep_group() const { return rank() / ep_size(); }
  // Experts [first, first + count) of E that this rank holds.
  int64_t first_local_expert(int64_t num_experts) const { return ep_rank() * (num_experts / ep_size()); }
  int64_t num_local_experts(int64_t num_experts) const { return num_experts / ep_size(); }
  Communicator& world() const { return *world_; }
  Communicator& ep() const { return *ep_; }
  Communicator& expert_replicas() const { return *replicas_; }
  std::string describe() const;

 private:
  std::shared_ptr<Communicator> world_, ep_, replicas_;
};

}  // namespace some::parallel
