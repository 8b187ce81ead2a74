#include "src/train/device.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#ifdef SOME_WITH_CUDA
// The CPU Torch wheel ships c10/cuda headers without the generated cuda_cmake_macros.h (see
// parallel/nccl_communicator.cpp); a CUDA Torch has it.
#if !__has_include(<c10/cuda/impl/cuda_cmake_macros.h>) && !defined(C10_CUDA_NO_CMAKE_CONFIGURE_FILE)
#define C10_CUDA_NO_CMAKE_CONFIGURE_FILE
#endif
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

#include "common/check.h"
#include "common/errors.h"

namespace some::train {

#ifdef SOME_WITH_CUDA
namespace {
c10::DeviceIndex index_of(const torch::Device& device) { return device.has_index() ? device.index() : 0; }
}  // namespace
#endif

void synchronize(const torch::Device& device) {
  if (!device.is_cuda()) return;
#ifdef SOME_WITH_CUDA
  c10::cuda::CUDAGuard guard(index_of(device));
  c10::cuda::device_synchronize();
#else
  throw ConfigError("a CUDA device in a build without SOME_WITH_CUDA");
#endif
}

void reset_peak_memory(const torch::Device& device) {
  if (!device.is_cuda()) return;
#ifdef SOME_WITH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(index_of(device));
#endif
}

int64_t peak_memory_bytes(const torch::Device& device) {
  if (!device.is_cuda()) return 0;
#ifdef SOME_WITH_CUDA
  // allocated_bytes[0] is the aggregate over pool types (StatType::AGGREGATE) in every Torch 2.x.
  return c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device)).allocated_bytes[0].peak;
#else
  return 0;
#endif
}

int64_t free_memory_bytes(const torch::Device& device) {
  if (!device.is_cuda()) return 0;
#ifdef SOME_WITH_CUDA
  c10::cuda::CUDAGuard guard(index_of(device));
  size_t free = 0, total = 0;
  SOME_CHECK_CUDA(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free);
#else
  throw ConfigError("a CUDA device in a build without SOME_WITH_CUDA");
#endif
}

int64_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;  // not Linux
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

SyncDebugGuard::SyncDebugGuard(const torch::Device& device) : active_(device.is_cuda()) {
#ifdef SOME_WITH_CUDA
  if (active_) c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
#endif
}

SyncDebugGuard::~SyncDebugGuard() {
#ifdef SOME_WITH_CUDA
  if (active_) c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
#endif
}

int device_count(const torch::Device& device) {
  if (!device.is_cuda()) return 1;
#ifdef SOME_WITH_CUDA
  return std::max<int>(static_cast<int>(c10::cuda::device_count()), 1);
#else
  return 1;
#endif
}

}  // namespace some::train
