#include "parallel/gpu_assignment.h"

#include <unistd.h>

#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#ifdef SOME_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "common/check.h"
#include "common/errors.h"

namespace some::parallel {

std::string GpuIdentity::encode() const { return fmt::format("{} {} {}", host, bus_id, index); }

GpuIdentity GpuIdentity::decode(const std::string& line) {
  GpuIdentity id;
  std::istringstream in(line);
  in >> id.host >> id.bus_id >> id.index;
  SOME_REQUIRE(!in.fail(), Error, "malformed GPU identity '{}' (expected '<host> <bus id> <index>')", line);
  return id;
}

GpuIdentity local_gpu_identity(int index) {
  GpuIdentity id;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "unknown-host");
  id.host = host;
  id.index = index;
#ifdef SOME_WITH_CUDA
  char bus[64] = {};
  SOME_CHECK_CUDA(cudaDeviceGetPCIBusId(bus, sizeof(bus), index));
  id.bus_id = bus;
#else
  throw ConfigError("train.device = \"cuda\" needs a build with SOME_WITH_CUDA");
#endif
  return id;
}

std::string shared_gpu_problem(const std::vector<GpuIdentity>& gpu_of_rank) {
  std::map<std::pair<std::string, std::string>, std::vector<int>> ranks_of_gpu;  // (host, bus) -> ranks
  for (size_t r = 0; r < gpu_of_rank.size(); ++r) {
    ranks_of_gpu[{gpu_of_rank[r].host, gpu_of_rank[r].bus_id}].push_back(static_cast<int>(r));
  }
  std::vector<std::string> shared;
  for (const auto& [gpu, ranks] : ranks_of_gpu) {
    if (ranks.size() < 2) continue;
    const auto& first = gpu_of_rank[static_cast<size_t>(ranks.front())];
    shared.push_back(fmt::format("ranks {} share cuda:{} (PCI {}) on host {}", fmt::join(ranks, ", "), first.index,
                                 gpu.second, gpu.first));
  }
  if (shared.empty()) return "";
  return fmt::format(
      "{}: NCCL needs one GPU per rank. Start at most as many ranks per node as it has GPUs "
      "(mpirun -np / --map-by ppr:<GPUs>:node, or srun --ntasks-per-node=<GPUs> --gpus-per-task=1), "
      "or train on the CPU with train.device = \"cpu\"",
      fmt::join(shared, "; "));
}

void require_one_rank_per_gpu(Communicator& world, const GpuIdentity& mine) {
  std::vector<GpuIdentity> all;
  for (const auto& line : allgather_strings(world, mine.encode())) all.push_back(GpuIdentity::decode(line));
  const auto problem = shared_gpu_problem(all);
  if (!problem.empty()) throw ConfigError(problem);
}

}  // namespace some::parallel
