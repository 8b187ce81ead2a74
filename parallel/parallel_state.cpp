#include "parallel/parallel_state.h"

#include <fmt/format.h>

#include "common/check.h"
#include "common/errors.h"

namespace some::parallel {

ParallelState::ParallelState(std::shared_ptr<Communicator> world, int expert_parallel)
    : world_(std::move(world)), ep_size_(expert_parallel) {
  SOME_REQUIRE(ep_size_ >= 1 && world_size() % ep_size_ == 0, ConfigError,
               "parallel.expert_parallel = {} must divide the world size {}", ep_size_, world_size());
}

ParallelState ParallelState::single_process() {
  return ParallelState(std::make_shared<LocalCommunicator>(), 1);
}

std::string ParallelState::describe() const {
  return fmt::format("rank {}/{} | expert-parallel group {} of {} (P = {}, ep rank {})", rank(),
                     world_size(), ep_group(), world_size() / ep_size_, ep_size_, ep_rank());
}

}  // namespace some::parallel
