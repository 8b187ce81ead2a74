#pragma once
// The few things the trainer and the benchmarks ask of a device beyond tensors: wait for queued
// work (CUDA runs asynchronously; a host clock measures nothing without it), the peak of the
// caching allocator's memory, and the free memory of a GPU. On the CPU they are no-ops and zeros.
#include <cstdint>

#include <torch/torch.h>

namespace some::train {

void synchronize(const torch::Device& device);          // returns when all queued work is done
void reset_peak_memory(const torch::Device& device);    // starts a new peak window
int64_t peak_memory_bytes(const torch::Device& device);  // bytes allocated at the peak; 0 on CPU
int64_t free_memory_bytes(const torch::Device& device);  // free on the GPU (cudaMemGetInfo); 0 on CPU
int device_count(const torch::Device& device);           // GPUs visible to this process; 1 on CPU

// Host memory of this process: resident now (/proc/self/statm), and the peak so far (getrusage).
int64_t rss_bytes();
int64_t peak_rss_bytes();

// While alive on a CUDA device, any call that synchronises the host with the device throws
// (CUDA's sync-debug mode set to error): how a test proves a code path never waits. A no-op on CPU.
class SyncDebugGuard {
 public:
  explicit SyncDebugGuard(const torch::Device& device);
  ~SyncDebugGuard();
  SyncDebugGuard(const SyncDebugGuard&) = delete;
  SyncDebugGuard& operator=(const SyncDebugGuard&) = delete;

 private:
  bool active_ = false;
};

}  // namespace some::train
