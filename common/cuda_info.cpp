#include "common/cuda_info.h"

#ifdef SOME_WITH_CUDA
#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include "common/check.h"
#endif

namespace some {

#ifdef SOME_WITH_CUDA
std::string describe_cuda_devices() {
  int count = 0;
  SOME_CHECK_CUDA(cudaGetDeviceCount(&count));
  std::string out = fmt::format("{} CUDA device(s)", count);
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    SOME_CHECK_CUDA(cudaGetDeviceProperties(&prop, i));
    out += fmt::format("{} {}: {} ({:.1f} GiB, sm_{}{})", i == 0 ? ":" : ",", i, prop.name,
                       static_cast<double>(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor);
  }
  return out;
}
#else
std::string describe_cuda_devices() { return "built without CUDA (SOME_WITH_CUDA=OFF)"; }
#endif

}  // namespace some
