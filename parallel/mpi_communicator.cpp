#include "parallel/mpi_communicator.h"

#include <cstdlib>
#include <limits>

#include "common/check.h"
#include "common/errors.h"

namespace some::parallel {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return fmt::format("error code {}", code);
  return fmt::format("{} (error code {})", std::string(text, static_cast<size_t>(length)), code);
}

namespace {

MPI_Datatype reduce_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    default: throw Error(std::string("MPI allreduce of ") + c10::toString(t.scalar_type()) + " tensors is not supported");
  }
}

void require_cpu_contiguous(const torch::Tensor& t, const char* what) {
  SOME_REQUIRE(t.device().is_cpu(), Error, "MpiCommunicator::{} needs CPU tensors, got {}", what, t.device().str());
  SOME_REQUIRE(t.is_contiguous(), Error, "MpiCommunicator::{} needs a contiguous tensor", what);
}

int to_int(int64_t v, const char* what) {
  SOME_REQUIRE(v >= 0 && v <= std::numeric_limits<int>::max(), Error, "{} = {} exceeds MPI's int counts", what, v);
  return static_cast<int>(v);
}

}  // namespace

bool MpiRuntime::launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(var)) return true;
  }
  return false;
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;
  int provided = 0;
  SOME_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  // Errors come back as codes that SOME_CHECK_MPI turns into exceptions, not as aborts.
  SOME_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  active_ = true;
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (active_ && !finalized) MPI_Finalize();
}

void MpiRuntime::abort(int code) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) {
  SOME_CHECK_MPI(MPI_Comm_dup(comm, &comm_));
  SOME_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  SOME_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
  SOME_CHECK_MPI(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

std::shared_ptr<MpiCommunicator> MpiCommunicator::split(int color) const {
  MPI_Comm sub = MPI_COMM_NULL;
  SOME_CHECK_MPI(MPI_Comm_split(comm_, color, rank_, &sub));
  auto out = std::make_shared<MpiCommunicator>(sub);
  SOME_CHECK_MPI(MPI_Comm_free(&sub));
  return out;
}

void MpiCommunicator::allreduce_sum(torch::Tensor& t) {
  require_cpu_contiguous(t, "allreduce_sum");
  if (t.numel() == 0) return;
  SOME_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), to_int(t.numel(), "allreduce elements"),
                               reduce_type(t), MPI_SUM, comm_));
}

namespace {
class MpiWork final : public Work {
 public:
  MPI_Request request = MPI_REQUEST_NULL;
  void wait() override { SOME_CHECK_MPI(MPI_Wait(&request, MPI_STATUS_IGNORE)); }
  ~MpiWork() override {
    // A request still in flight must not outlive its buffer unnoticed: complete it.
    if (request != MPI_REQUEST_NULL) MPI_Wait(&request, MPI_STATUS_IGNORE);
  }
};
}  // namespace

std::unique_ptr<Work> MpiCommunicator::allreduce_sum_async(torch::Tensor& t) {
  require_cpu_contiguous(t, "allreduce_sum_async");
  auto work = std::make_unique<MpiWork>();
  if (t.numel() == 0) return work;
  SOME_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), to_int(t.numel(), "allreduce elements"), reduce_type(t),
                                MPI_SUM, comm_, &work->request));
  return work;
}

torch::Tensor MpiCommunicator::all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                                          const std::vector<int64_t>& recv_rows) {
  auto in = input.contiguous();
  require_cpu_contiguous(in, "all_to_all");
  SOME_REQUIRE(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_, Error,
               "all_to_all split sizes have {} / {} entries for {} ranks", send_rows.size(), recv_rows.size(), size_);
  // Bytes per row (from the shape, so a rank sending no rows still knows it): any dtype travels
  // as MPI_BYTE.
  SOME_REQUIRE(in.dim() >= 1, Error, "all_to_all needs a tensor of at least one dimension");
  int64_t row_bytes = static_cast<int64_t>(in.element_size());
  for (int64_t i = 1; i < in.dim(); ++i) row_bytes *= in.size(i);
  std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
  int64_t total_recv = 0, total_send = 0;
  std::vector<int> scount(size_), sdispl(size_), rcount(size_), rdispl(size_);
  for (int p = 0; p < size_; ++p) {
    scount[p] = to_int(send_rows[p] * row_bytes, "all_to_all send bytes");
    sdispl[p] = to_int(total_send * row_bytes, "all_to_all send offset");
    rcount[p] = to_int(recv_rows[p] * row_bytes, "all_to_all receive bytes");
    rdispl[p] = to_int(total_recv * row_bytes, "all_to_all receive offset");
    total_send += send_rows[p];
    total_recv += recv_rows[p];
  }
  SOME_REQUIRE(total_send == in.size(0), Error, "all_to_all sends {} rows of a {}-row tensor", total_send, in.size(0));
  shape[0] = total_recv;
  auto out = torch::empty(shape, in.options());
  SOME_CHECK_MPI(MPI_Alltoallv(in.data_ptr(), scount.data(), sdispl.data(), MPI_BYTE, out.data_ptr(), rcount.data(),
                               rdispl.data(), MPI_BYTE, comm_));
  return out;
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  require_cpu_contiguous(t, "broadcast");
  SOME_CHECK_MPI(MPI_Bcast(t.data_ptr(), to_int(t.numel() * t.element_size(), "broadcast bytes"), MPI_BYTE, root, comm_));
}

torch::Tensor MpiCommunicator::allgather(const torch::Tensor& t) {
  auto in = t.contiguous();
  require_cpu_contiguous(in, "allgather");
  std::vector<int64_t> shape{size_};
  shape.insert(shape.end(), in.sizes().begin(), in.sizes().end());
  auto out = torch::empty(shape, in.options());
  const int bytes = to_int(in.numel() * in.element_size(), "allgather bytes");
  SOME_CHECK_MPI(MPI_Allgather(in.data_ptr(), bytes, MPI_BYTE, out.data_ptr(), bytes, MPI_BYTE, comm_));
  return out;
}

void MpiCommunicator::barrier() { SOME_CHECK_MPI(MPI_Barrier(comm_)); }

}  // namespace some::parallel
