#include "parallel/instrumented_communicator.h"

namespace some::parallel {

const char* comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::all_to_all: return "all_to_all";
    case CommOp::allreduce: return "allreduce";
    case CommOp::broadcast: return "broadcast";
    case CommOp::allgather: return "allgather";
    case CommOp::barrier: return "barrier";
  }
  return "?";
}

namespace {
int64_t tensor_bytes(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

// Forwards wait() to the wrapped Work and adds its duration to the allreduce that started it.
class InstrumentedWork final : public Work {
 public:
  InstrumentedWork(std::unique_ptr<Work> inner, InstrumentedCommunicator& owner, int64_t call, uint64_t generation)
      : inner_(std::move(inner)), owner_(owner), call_(call), generation_(generation) {}
  ~InstrumentedWork() override {
    if (!done_) {
      try {
        wait();
      } catch (...) {  // the wrapped Work's own destructor completes the request
      }
    }
  }
  void wait() override {
    if (done_) return;
    auto t0 = std::chrono::steady_clock::now();
    inner_->wait();
    done_ = true;
    owner_.add_wait_time(call_, generation_, seconds_since(t0));
  }

 private:
  std::unique_ptr<Work> inner_;
  InstrumentedCommunicator& owner_;
  int64_t call_;
  uint64_t generation_;
  bool done_ = false;
};

InstrumentedCommunicator::InstrumentedCommunicator(std::shared_ptr<Communicator> inner) : inner_(std::move(inner)) {}

int64_t InstrumentedCommunicator::record(CommOp op, bool async, const torch::Tensor* t, int64_t bytes,
                                         int64_t self_bytes, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& s = stats_[static_cast<int>(op)];
  ++s.calls;
  if (async) ++s.async_calls;
  s.bytes += bytes;
  s.self_bytes += self_bytes;
  s.seconds += seconds;
  if (!log_calls_) return -1;
  CommCall c{op, async, t ? t->numel() : 0, t ? t->scalar_type() : c10::ScalarType::Undefined, bytes, self_bytes,
             seconds};
  calls_.push_back(c);
  return static_cast<int64_t>(calls_.size()) - 1;
}

void InstrumentedCommunicator::add_wait_time(int64_t call_index, uint64_t generation, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (generation != generation_) return;  // started before a reset()
  stats_[static_cast<int>(CommOp::allreduce)].seconds += seconds;
  if (call_index >= 0 && call_index < static_cast<int64_t>(calls_.size())) calls_[call_index].seconds += seconds;
}

void InstrumentedCommunicator::allreduce_sum(torch::Tensor& t) {
  auto t0 = Clock::now();
  inner_->allreduce_sum(t);
  record(CommOp::allreduce, false, &t, tensor_bytes(t), 0, seconds_since(t0));
}

std::unique_ptr<Work> InstrumentedCommunicator::allreduce_sum_async(torch::Tensor& t) {
  auto t0 = Clock::now();
  auto work = inner_->allreduce_sum_async(t);
  const double start_s = seconds_since(t0);
  const int64_t call = record(CommOp::allreduce, true, &t, tensor_bytes(t), 0, start_s);
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation = generation_;
  }
  return std::make_unique<InstrumentedWork>(std::move(work), *this, call, generation);
}

torch::Tensor InstrumentedCommunicator::all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows,
                                                   const std::vector<int64_t>& recv_rows) {
  int64_t row_bytes = static_cast<int64_t>(input.element_size());
  for (int64_t i = 1; i < input.dim(); ++i) row_bytes *= input.size(i);
  int64_t remote_rows = 0, self_rows = 0;
  const int me = rank();
  for (size_t p = 0; p < send_rows.size(); ++p) {
    (static_cast<int>(p) == me ? self_rows : remote_rows) += send_rows[p];
  }
  auto t0 = Clock::now();
  auto out = inner_->all_to_all(input, send_rows, recv_rows);
  record(CommOp::all_to_all, false, &input, remote_rows * row_bytes, self_rows * row_bytes, seconds_since(t0));
  return out;
}

void InstrumentedCommunicator::broadcast(torch::Tensor& t, int root) {
  auto t0 = Clock::now();
  inner_->broadcast(t, root);
  record(CommOp::broadcast, false, &t, tensor_bytes(t), 0, seconds_since(t0));
}

torch::Tensor InstrumentedCommunicator::allgather(const torch::Tensor& t) {
  auto t0 = Clock::now();
  auto out = inner_->allgather(t);
  record(CommOp::allgather, false, &t, tensor_bytes(t), 0, seconds_since(t0));
  return out;
}

void InstrumentedCommunicator::barrier() {
  auto t0 = Clock::now();
  inner_->barrier();
  record(CommOp::barrier, false, nullptr, 0, 0, seconds_since(t0));
}

CommOpStats InstrumentedCommunicator::stats(CommOp op) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_[static_cast<int>(op)];
}

std::vector<CommCall> InstrumentedCommunicator::calls() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return calls_;
}

void InstrumentedCommunicator::set_call_log(bool on) {
  std::lock_guard<std::mutex> lock(mutex_);
  log_calls_ = on;
}

void InstrumentedCommunicator::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_ = {};
  calls_.clear();
  ++generation_;
}

}  // namespace some::parallel
