#include "parallel/gradient_allreduce.h"

namespace some::parallel {

GradientAllreduce::GradientAllreduce(std::vector<torch::Tensor> params, Communicator& comm, bool overlap,
                                     int64_t bucket_bytes)
    : comm_(comm) {
  if (comm_.world_size() == 1) return;  // nothing to reduce
  // Buckets in reverse registration order: backward produces the last layers' gradients first.
  int64_t filled = bucket_bytes;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    auto& p = *it;
    const int64_t bytes = p.numel() * p.element_size();
    bool fits = !buckets_.empty() && filled + bytes <= bucket_bytes &&
                buckets_.back().params.front().scalar_type() == p.scalar_type() &&
                buckets_.back().params.front().device() == p.device();
    if (!fits) {
      buckets_.emplace_back();
      filled = 0;
    }
    auto& b = buckets_.back();
    b.offsets.push_back(b.params.empty() ? 0 : b.offsets.back() + b.params.back().numel());
    b.params.push_back(p);
    filled += bytes;
  }
  for (auto& b : buckets_) {
    b.flat = torch::zeros({b.offsets.back() + b.params.back().numel()}, b.params.front().options());
  }
  if (!overlap) return;
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    for (size_t i = 0; i < buckets_[bi].params.size(); ++i) {
      auto& p = buckets_[bi].params[i];
      // A leaf's hook sees the gradient of this backward before it is accumulated into .grad.
      unsigned handle = p.register_hook([this, bi, i](const torch::Tensor& grad) {
        on_final_grad(bi, i, grad);
        return torch::Tensor();
      });
      hooks_.emplace_back(p, handle);
    }
  }
}

GradientAllreduce::~GradientAllreduce() {
  for (auto& [p, handle] : hooks_) p.remove_hook(handle);
}

void GradientAllreduce::expect_final_backward() {
  armed_ = !hooks_.empty();
  started_in_backward_ = 0;
}

void GradientAllreduce::on_final_grad(size_t bucket, size_t index, const torch::Tensor& grad) {
  if (!armed_) return;
  torch::NoGradGuard no_grad;
  auto& b = buckets_[bucket];
  auto& p = b.params[index];
  auto slot = b.flat.narrow(0, b.offsets[index], p.numel()).view_as(p);
  // The final gradient = what earlier micro-batches accumulated + this backward's part.
  if (p.grad().defined()) {
    torch::add_out(slot, p.grad(), grad);
  } else {
    slot.copy_(grad);
  }
  if (++b.ready == b.params.size()) {
    start(b);
    ++started_in_backward_;
  }
}

void GradientAllreduce::start(Bucket& b) { b.work = comm_.allreduce_sum_async(b.flat); }

void GradientAllreduce::finish() {
  if (buckets_.empty()) return;
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    if (b.work) continue;
    // Not started during backward (no overlap, or a parameter got no gradient): stage it now.
    for (size_t i = 0; i < b.params.size(); ++i) {
      auto& p = b.params[i];
      auto slot = b.flat.narrow(0, b.offsets[i], p.numel()).view_as(p);
      if (p.grad().defined()) {
        slot.copy_(p.grad());
      } else {
        slot.zero_();
      }
    }
    start(b);
  }
  const double inv_world = 1.0 / comm_.world_size();
  for (auto& b : buckets_) {
    b.work->wait();
    b.work.reset();
    b.ready = 0;
    b.flat.mul_(inv_world);
    for (size_t i = 0; i < b.params.size(); ++i) {
      auto& p = b.params[i];
      auto slot = b.flat.narrow(0, b.offsets[i], p.numel()).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slot);
      } else {
        p.mutable_grad() = slot.clone();
      }
    }
  }
  armed_ = false;
}

}  // namespace some::parallel
