#pragma once
// One rank per GPU. NCCL cannot put two ranks of a communicator on one GPU (it fails at init
// with a duplicate-GPU error, or hangs); a job with more ranks per node than GPUs is refused up
// front, with every rank naming the ranks and the device they would share.
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace some::parallel {

// What a rank's GPU is, physically: "<host> <PCI bus id> cuda:<index>". Two ranks share a GPU
// when host and bus id agree, whatever CUDA_VISIBLE_DEVICES made their indices.
struct GpuIdentity {
  std::string host, bus_id;
  int index = -1;
  std::string encode() const;                         // one line, for the allgather
  static GpuIdentity decode(const std::string& line);
};

// The identity of CUDA device `index` on this host (needs SOME_WITH_CUDA).
GpuIdentity local_gpu_identity(int index);

// Empty when every rank has its own GPU, else why not: "ranks 0 and 2 share cuda:0 (PCI
// 0000:18:00.0) on host n1; ..." and what to do about it.
std::string shared_gpu_problem(const std::vector<GpuIdentity>& gpu_of_rank);

// Collective: gathers every rank's identity and throws the same ConfigError on every rank
// when two share a GPU.
void require_one_rank_per_gpu(Communicator& world, const GpuIdentity& mine);

}  // namespace some::parallel
