#pragma once
// Checked calls in the nccl-tests style: every MPI / NCCL / CUDA / HDF5 call goes through a
// macro that names the call, file and line, and throws some::CallError instead of exiting.
#include <string>

#include <fmt/format.h>

#include "common/errors.h"

namespace some::detail {
[[noreturn]] inline void call_failed(const char* lib, const char* call, const char* file, int line,
                                     const std::string& why) {
  throw CallError(fmt::format("{} call '{}' failed at {}:{}{}{}", lib, call, file, line,
                              why.empty() ? "" : ": ", why));
}
}  // namespace some::detail

// HDF5 calls return a negative value (herr_t or hid_t) on failure.
#define SOME_CHECK_HDF5(call)                                                       \
  do {                                                                              \
    if ((call) < 0) ::some::detail::call_failed("HDF5", #call, __FILE__, __LINE__, ""); \
  } while (0)

// Same, for calls whose result we keep (hid_t).
#define SOME_HDF5_ID(call)                                                                 \
  [&]() {                                                                                  \
    auto some_h5_id_ = (call);                                                             \
    if (some_h5_id_ < 0) ::some::detail::call_failed("HDF5", #call, __FILE__, __LINE__, ""); \
    return some_h5_id_;                                                                    \
  }()

// SOME_CHECK_MPI lives in parallel/mpi_communicator.h, beside <mpi.h> (its message needs
// MPI_Error_string).

#ifdef SOME_WITH_CUDA
#include <cuda_runtime_api.h>
#define SOME_CHECK_CUDA(call)                                                          \
  do {                                                                                 \
    cudaError_t some_cuda_rc_ = (call);                                                \
    if (some_cuda_rc_ != cudaSuccess) {                                                \
      ::some::detail::call_failed("CUDA", #call, __FILE__, __LINE__,                   \
                                  cudaGetErrorString(some_cuda_rc_));                  \
    }                                                                                  \
  } while (0)
#endif

// A runtime precondition (never an assert: it must survive NDEBUG).
#define SOME_REQUIRE(cond, ErrorType, ...)                                              \
  do {                                                                                 \
    if (!(cond)) throw ErrorType(::fmt::format(__VA_ARGS__));                          \
  } while (0)
