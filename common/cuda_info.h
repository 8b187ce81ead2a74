#pragma once
// What the CUDA runtime sees, for the start-of-run log line. Built without CUDA it says so.
#include <string>

namespace some {

// "2 CUDA device(s): 0: NVIDIA H100 (79.1 GiB, sm_90), ..." or why there are none.
std::string describe_cuda_devices();

}  // namespace some
