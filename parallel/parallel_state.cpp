#include "parallel/parallel_state.h"

#include <fmt/format.h>

#include "common/check.h"
#include "common/errors.h"
#include "parallel/gpu_assignment.h"
#include "parallel/mpi_communicator.h"
#ifdef SOME_WITH_CUDA
#include "parallel/nccl_communicator.h"
#endif

namespace some::parallel {

ParallelState::ParallelState(std::shared_ptr<Communicator> world, std::shared_ptr<Communicator> ep,
                             std::shared_ptr<Communicator> replicas)
    : world_(std::move(world)), ep_(std::move(ep)), replicas_(std::move(replicas)) {
  SOME_REQUIRE(world_size() % ep_size() == 0, ConfigError,
               "parallel.expert_parallel = {} must divide the world size {}", ep_size(), world_size());
  if (!replicas_) {
    SOME_REQUIRE(ep_size() == 1 || ep_size() == world_size(), Error,
                 "ParallelState with W = {} and P = {} needs the expert-replica communicator", world_size(), ep_size());
    replicas_ = ep_size() == 1 ? world_ : std::make_shared<LocalCommunicator>();
  }
  SOME_REQUIRE(replicas_->world_size() == world_size() / ep_size(), Error,
               "expert-replica communicator has {} ranks, expected W / P = {}", replicas_->world_size(),
               world_size() / ep_size());
}

ParallelState ParallelState::single_process() {
  auto local = std::make_shared<LocalCommunicator>();
  return ParallelState(local, local);
}

ParallelState ParallelState::from_mpi(int expert_parallel, int cuda_device) {
  auto world = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
  SOME_REQUIRE(expert_parallel >= 1 && world->world_size() % expert_parallel == 0, ConfigError,
               "parallel.expert_parallel = {} must divide the world size {} (mpirun -np)", expert_parallel,
               world->world_size());
  auto ep_mpi = world->split(world->rank() / expert_parallel);
  auto replicas_mpi = world->split(world->rank() % expert_parallel);  // same experts, other groups
  const bool one_replica = world->world_size() == expert_parallel;
  if (cuda_device >= 0) {
#ifdef SOME_WITH_CUDA
    // Before any NCCL call: two ranks on one GPU would fail inside ncclCommInitRank (or hang).
    require_one_rank_per_gpu(*world, local_gpu_identity(cuda_device));
    std::shared_ptr<Communicator> ep = std::make_shared<LocalCommunicator>();
    if (expert_parallel > 1) ep = std::make_shared<NcclCommunicator>(*ep_mpi, cuda_device);
    auto nccl_world = std::make_shared<NcclCommunicator>(*world, cuda_device);
    std::shared_ptr<Communicator> replicas = std::make_shared<LocalCommunicator>();
    if (expert_parallel == 1) replicas = nccl_world;
    else if (!one_replica) replicas = std::make_shared<NcclCommunicator>(*replicas_mpi, cuda_device);
    return ParallelState(nccl_world, ep, replicas);
#else
    throw ConfigError("train.device = \"cuda\" with several ranks needs a build with SOME_WITH_CUDA (NCCL)");
#endif
  }
  std::shared_ptr<Communicator> ep = ep_mpi;
  if (expert_parallel == 1) ep = std::make_shared<LocalCommunicator>();
  std::shared_ptr<Communicator> replicas = replicas_mpi;
  if (expert_parallel == 1) replicas = world;
  else if (one_replica) replicas = std::make_shared<LocalCommunicator>();
  return ParallelState(world, ep, replicas);
}

std::string ParallelState::describe() const {
  return fmt::format("rank {}/{} ({}) | expert-parallel group {} of {} (P = {}, ep rank {})", rank(), world_size(),
                     world_->name(), ep_group(), world_size() / ep_size(), ep_size(), ep_rank());
}

std::string broadcast_string(Communicator& comm, const std::string& s, int root) {
  auto size = torch::tensor({static_cast<int64_t>(s.size())}, torch::kInt64);
  comm.broadcast(size, root);
  auto bytes = torch::zeros({size.item<int64_t>()}, torch::kUInt8);
  if (comm.rank() == root && !s.empty()) std::memcpy(bytes.data_ptr(), s.data(), s.size());
  comm.broadcast(bytes, root);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr()), bytes.numel());
}

std::vector<std::string> allgather_strings(Communicator& comm, const std::string& s) {
  auto sizes = comm.allgather(torch::tensor({static_cast<int64_t>(s.size())}, torch::kInt64));  // (W, 1)
  const auto longest = sizes.max().item<int64_t>();
  auto bytes = torch::zeros({longest}, torch::kUInt8);
  if (!s.empty()) std::memcpy(bytes.data_ptr(), s.data(), s.size());
  auto all = comm.allgather(bytes);                                                                // (W, longest)
  std::vector<std::string> out;
  for (int r = 0; r < comm.world_size(); ++r) {
    out.emplace_back(reinterpret_cast<const char*>(all[r].data_ptr()), sizes[r][0].item<int64_t>());
  }
  return out;
}

}  // namespace some::parallel
