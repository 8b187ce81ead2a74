#include "parallel/gradient_allreduce.h"

namespace some::parallel {

GradientAllreduce::GradientAllreduce(std::vector<torch::Tensor> params, Communicator& comm, int64_t bucket_bytes)
    : comm_(comm) {
  int64_t filled = bucket_bytes;
  for (auto& p : params) {
    const int64_t bytes = p.numel() * p.element_size();
    bool fits = !buckets_.empty() && filled + bytes <= bucket_bytes &&
                buckets_.back().front().scalar_type() == p.scalar_type() &&
                buckets_.back().front().device() == p.device();
    if (!fits) {
      buckets_.emplace_back();
      filled = 0;
    }
    buckets_.back().push_back(p);
    filled += bytes;
  }
}

void GradientAllreduce::run() {
  if (comm_.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  const double inv_world = 1.0 / comm_.world_size();
  for (auto& bucket : buckets_) {
    std::vector<torch::Tensor> flat;
    for (auto& p : bucket) {
      flat.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
    }
    auto buffer = torch::cat(flat);
    comm_.allreduce_sum(buffer);
    buffer.mul_(inv_world);
    int64_t offset = 0;
    for (auto& p : bucket) {
      auto slice = buffer.narrow(0, offset, p.numel()).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slice);
      } else {
        p.mutable_grad() = slice.clone();
      }
      offset += p.numel();
    }
  }
}

}  // namespace some::parallel
