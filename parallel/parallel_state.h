#pragma once
// Where this process sits in the rank grid (SPEC §5), built once from W and P and passed in.
#include <cstdint>
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace some::parallel {

class ParallelState {
 public:
  // world: the communicator of all ranks; expert_parallel: P (P | W).
  ParallelState(std::shared_ptr<Communicator> world, int expert_parallel);
  static ParallelState single_process();

  int rank() const { return world_->rank(); }
  int world_size() const { return world_->world_size(); }
  int ep_size() const { return ep_size_; }
  int ep_rank() const { return rank() % ep_size_; }
  int ep_group() const { return rank() / ep_size_; }
  // Experts [first, first + count) of E that this rank holds.
  int64_t first_local_expert(int64_t num_experts) const { return ep_rank() * num_experts / ep_size_; }
  int64_t num_local_experts(int64_t num_experts) const { return num_experts / ep_size_; }
  Communicator& world() const { return *world_; }
  std::string describe() const;

 private:
  std::shared_ptr<Communicator> world_;
  int ep_size_;
};

}  // namespace some::parallel
