#include "parallel/nccl_communicator.h"

#include <chrono>
#include <cstring>
#include <thread>

// The CPU Torch wheel ships c10/cuda headers without the generated cuda_cmake_macros.h (it
// only defines the Windows DLL export switch); without it they still compile, for CI.
#if !__has_include(<c10/cuda/impl/cuda_cmake_macros.h>) && !defined(C10_CUDA_NO_CMAKE_CONFIGURE_FILE)
#define C10_CUDA_NO_CMAKE_CONFIGURE_FILE
#endif
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"

// Same style as common/check.h: names the call, file and line, NCCL's error string and its
// last-error text (the detailed reason, e.g. which peer or transport failed).
#define SOME_CHECK_NCCL(call)                                                                   \
  do {                                                                                          \
    ncclResult_t some_nccl_rc_ = (call);                                                        \
    if (some_nccl_rc_ != ncclSuccess) {                                                         \
      const char* some_nccl_last_ = ncclGetLastError(nullptr);                                  \
      ::some::detail::call_failed(                                                              \
          "NCCL", #call, __FILE__, __LINE__,                                                    \
          ::fmt::format("{} (ncclResult_t {}){}{}", ncclGetErrorString(some_nccl_rc_),          \
                        static_cast<int>(some_nccl_rc_),                                        \
                        (some_nccl_last_ && *some_nccl_last_) ? "; last error: " : "",          \
                        (some_nccl_last_ && *some_nccl_last_) ? some_nccl_last_ : ""));         \
    }                                                                                           \
  } while (0)

namespace some::parallel {

namespace {

ncclDataType_t reduce_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kFloat16: return ncclFloat16;
    default:
      throw Error(std::string("NCCL allreduce of ") + c10::toString(t.scalar_type()) + " tensors is not supported");
  }
}

size_t byte_count(const torch::Tensor& t) { return static_cast<size_t>(t.numel()) * t.element_size(); }

cudaStream_t current_stream(int device) {
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device)
    : rank_(bootstrap.rank()), size_(bootstrap.world_size()), device_(device) {
  int count = 0;
  SOME_CHECK_CUDA(cudaGetDeviceCount(&count));
  SOME_REQUIRE(device >= 0 && device < count, Error, "NcclCommunicator: rank {} asks for CUDA device {} of {}", rank_,
               device, count);
  // Rank 0's unique id travels to every rank as bytes over the bootstrap (control plane, docs/design.md §5).
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank_ == 0) SOME_CHECK_NCCL(ncclGetUniqueId(&id));
  auto id_bytes = torch::empty({static_cast<int64_t>(sizeof(id))}, torch::TensorOptions().dtype(torch::kUInt8));
  std::memcpy(id_bytes.data_ptr(), &id, sizeof(id));
  bootstrap.broadcast(id_bytes, 0);
  std::memcpy(&id, id_bytes.data_ptr(), sizeof(id));

  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  ncclComm_t comm = nullptr;
  SOME_CHECK_NCCL(ncclCommInitRank(&comm, size_, id, rank_));
  comm_ = comm;
  int nccl_count = 0, nccl_rank = 0;
  SOME_CHECK_NCCL(ncclCommCount(comm_, &nccl_count));
  SOME_CHECK_NCCL(ncclCommUserRank(comm_, &nccl_rank));
  SOME_REQUIRE(nccl_count == size_ && nccl_rank == rank_, Error,
               "NCCL communicator is rank {} of {}, its MPI bootstrap rank {} of {}", nccl_rank, nccl_count, rank_,
               size_);
  int version = 0;
  SOME_CHECK_NCCL(ncclGetVersion(&version));
  log::get("parallel")->debug("NCCL {} communicator: rank {} of {} on cuda:{}", version, rank_, size_, device_);
}

NcclCommunicator::~NcclCommunicator() {
  if (!comm_) return;
  // Never throws: a failure is logged. After an asynchronous error (a peer died) the
  // communicator is aborted rather than destroyed, which would wait for the dead peer.
  ncclResult_t async = ncclSuccess;
  ncclResult_t rc = ncclCommGetAsyncError(comm_, &async);
  if (rc != ncclSuccess || async != ncclSuccess) {
    rc = ncclCommAbort(comm_);
  } else {
    rc = ncclCommDestroy(comm_);
  }
  if (rc != ncclSuccess) {
    log::get("parallel")->warn("NCCL communicator teardown failed: {}", ncclGetErrorString(rc));
  }
  comm_ = nullptr;
}

void NcclCommunicator::require_on_device(const torch::Tensor& t, const char* what) const {
  SOME_REQUIRE(comm_ != nullptr, Error, "NcclCommunicator::{} after the communicator was aborted", what);
  SOME_REQUIRE(t.device().is_cuda() && t.device().index() == device_, Error,
               "NcclCommunicator::{} needs tensors on cuda:{}, got {}", what, device_, t.device().str());
  SOME_REQUIRE(t.is_contiguous(), Error, "NcclCommunicator::{} needs a contiguous tensor", what);
}

// CPU tensors (control values: losses, counters, checksums) are staged through the device so
// that the trainer can use one communicator for everything.
void NcclCommunicator::allreduce_sum(torch::Tensor& t) {
  if (t.device().is_cpu()) {
    auto staged = t.to(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_)));
    allreduce_sum(staged);
    t.copy_(staged);
    return;
  }
  require_on_device(t, "allreduce_sum");
  if (t.numel() == 0) return;
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  SOME_CHECK_NCCL(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), reduce_type(t), ncclSum,
                                comm_, current_stream(device_)));
}

torch::Tensor NcclCommunicator::all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                                           const std::vector<int64_t>& recv_rows) {
  if (input.device().is_cpu()) {
    return all_to_all(input.to(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_))), send_rows,
                      recv_rows).cpu();
  }
  auto in = input.contiguous();
  require_on_device(in, "all_to_all");
  SOME_REQUIRE(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_, Error,
               "all_to_all split sizes have {} / {} entries for {} ranks", send_rows.size(), recv_rows.size(), size_);
  SOME_REQUIRE(in.dim() > 0, Error, "all_to_all needs a tensor with a row dimension");
  // Whole rows travel as bytes, whatever the dtype.
  size_t row_bytes = static_cast<size_t>(in.element_size());
  for (int64_t d = 1; d < in.dim(); ++d) row_bytes *= static_cast<size_t>(in.size(d));
  std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
  int64_t total_send = 0, total_recv = 0;
  for (int p = 0; p < size_; ++p) {
    SOME_REQUIRE(send_rows[p] >= 0 && recv_rows[p] >= 0, Error, "all_to_all has a negative split for rank {}", p);
    total_send += send_rows[p];
    total_recv += recv_rows[p];
  }
  SOME_REQUIRE(total_send == in.size(0), Error, "all_to_all sends {} rows of a {}-row tensor", total_send, in.size(0));
  shape[0] = total_recv;
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  auto out = torch::empty(shape, in.options());
  if (row_bytes == 0) return out;
  auto* send = static_cast<const char*>(in.data_ptr());
  auto* recv = static_cast<char*>(out.data_ptr());
  cudaStream_t stream = current_stream(device_);
  size_t send_off = 0, recv_off = 0;
  // One group: NCCL runs the W sends and W receives concurrently (no ordering deadlock).
  // Empty splits are skipped on both sides (a zero on one side is a zero on the other).
  SOME_CHECK_NCCL(ncclGroupStart());
  try {
    for (int p = 0; p < size_; ++p) {
      const size_t sbytes = static_cast<size_t>(send_rows[p]) * row_bytes;
      const size_t rbytes = static_cast<size_t>(recv_rows[p]) * row_bytes;
      if (sbytes > 0) SOME_CHECK_NCCL(ncclSend(send + send_off, sbytes, ncclUint8, p, comm_, stream));
      if (rbytes > 0) SOME_CHECK_NCCL(ncclRecv(recv + recv_off, rbytes, ncclUint8, p, comm_, stream));
      send_off += sbytes;
      recv_off += rbytes;
    }
  } catch (...) {
    ncclGroupEnd();  // close the group before the error leaves; the first failure is reported
    throw;
  }
  SOME_CHECK_NCCL(ncclGroupEnd());
  return out;
}

void NcclCommunicator::broadcast(torch::Tensor& t, int root) {
  if (t.device().is_cpu()) {
    auto staged = t.to(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_)));
    broadcast(staged, root);
    t.copy_(staged);
    return;
  }
  require_on_device(t, "broadcast");
  SOME_REQUIRE(root >= 0 && root < size_, Error, "broadcast root {} outside 0..{}", root, size_ - 1);
  if (t.numel() == 0) return;
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  SOME_CHECK_NCCL(
      ncclBroadcast(t.data_ptr(), t.data_ptr(), byte_count(t), ncclUint8, root, comm_, current_stream(device_)));
}

torch::Tensor NcclCommunicator::allgather(const torch::Tensor& t) {
  if (t.device().is_cpu()) return allgather(t.to(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_)))).cpu();
  auto in = t.contiguous();
  require_on_device(in, "allgather");
  std::vector<int64_t> shape{size_};
  shape.insert(shape.end(), in.sizes().begin(), in.sizes().end());
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  auto out = torch::empty(shape, in.options());
  if (in.numel() == 0) return out;
  SOME_CHECK_NCCL(
      ncclAllGather(in.data_ptr(), out.data_ptr(), byte_count(in), ncclUint8, comm_, current_stream(device_)));
  return out;
}

void NcclCommunicator::barrier() {
  SOME_REQUIRE(comm_ != nullptr, Error, "NcclCommunicator::barrier after the communicator was aborted");
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  if (!barrier_scratch_.defined()) {
    barrier_scratch_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA, device_));
  }
  SOME_CHECK_NCCL(ncclAllReduce(barrier_scratch_.data_ptr(), barrier_scratch_.data_ptr(), 1, ncclFloat32, ncclSum,
                                comm_, current_stream(device_)));
  wait_stream();
}

void NcclCommunicator::wait_stream() {
  cudaStream_t stream = current_stream(device_);
  for (;;) {
    cudaError_t state = cudaStreamQuery(stream);
    if (state == cudaSuccess) return;
    if (state != cudaErrorNotReady) SOME_CHECK_CUDA(state);
    ncclResult_t async = ncclSuccess;
    SOME_CHECK_NCCL(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess) {
      // A peer failed: abort now so that the kernels stuck waiting on it are torn down; the
      // communicator is unusable afterwards (comm_ is null, collectives throw).
      ncclComm_t dead = comm_;
      comm_ = nullptr;
      ncclCommAbort(dead);
      SOME_CHECK_NCCL(async);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace some::parallel
