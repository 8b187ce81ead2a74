#pragma once
// The grouped expert kernel against the per-expert loop, as relative norms ||grouped - loop|| /
// ||loop|| of the output, the input gradient and (trainable experts) both weight gradients — one
// helper for the CPU test (test_some_layer) and its CUDA twin (test_cuda), so that both check the
// same numbers. A kernel that wrote zeros gives 1 in every entry; run either test with
// SOME_FAULT_ZERO_GROUPED_OUTPUT=1 to see it fail (ctest: experts.grouped_check_fails_on_zeroed_kernel).
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "common/fault_injection.h"
#include "src/model/expert_shard.h"

namespace some::test {

struct GroupedVsLoop {
  double y = 0, x_grad = 0, w_down_grad = 0, w_up_grad = 0;  // relative norms; weights: trainable only
  double max() const { return std::max({y, x_grad, w_down_grad, w_up_grad}); }
};

// Two shards holding the same experts (same layer, seed and kind) on `device`: the first computes
// with the grouped kernel, the second with the per-expert loop (expert.compute forced).
inline std::pair<model::ExpertShard, model::ExpertShard> grouped_and_loop(
    int64_t experts, int64_t d, int64_t h, uint64_t seed,
    model::ExpertShardImpl::Kind kind = model::ExpertShardImpl::Kind::kFrozen, const torch::Device& device = torch::kCPU) {
  model::ExpertOptions grouped_opts, loop_opts;
  grouped_opts.compute = model::ExpertCompute::kGrouped;
  loop_opts.compute = model::ExpertCompute::kLoop;
  model::ExpertShard grouped(0, 0, experts, d, h, grouped_opts, seed, kind), loop(0, 0, experts, d, h, loop_opts, seed, kind);
  grouped->to(device);
  loop->to(device);
  return {grouped, loop};
}

inline double relative_norm(const torch::Tensor& a, const torch::Tensor& reference) {
  auto x = a.detach().to(torch::kCPU, torch::kFloat64), r = reference.detach().to(torch::kCPU, torch::kFloat64);
  return (x - r).norm().item<double>() / std::max(r.norm().item<double>(), 1e-30);
}

// One forward (under bf16 autocast on x's device when `bf16`) and backward of `grouped` through
// forward_grouped and of `loop` through forward_loop — each kernel called by name, so equal
// results cannot come from both taking one path — on the same x, counts and output gradient.
// Prints one line `grouped_vs_loop_rel <label> y=… x_grad=… w_down_grad=… w_up_grad=…`.
inline GroupedVsLoop grouped_vs_loop(model::ExpertShard& grouped, model::ExpertShard& loop, const torch::Tensor& x,
                                     const std::vector<int64_t>& counts, const torch::Tensor& out_grad, bool bf16,
                                     const std::string& label) {
  model::ExpertShardImpl::fault_zero_grouped_output = fault::zero_grouped_output();
  const auto type = x.device().type();
  auto run = [&](model::ExpertShard& shard, bool use_grouped) {
    auto xi = x.detach().clone().requires_grad_(true);
    const bool was = at::autocast::is_autocast_enabled(type);
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::set_autocast_enabled(type, bf16);
    auto row_counts = parallel::RowCounts::from_host(counts, x.device());
    auto y = use_grouped ? shard->forward_grouped(xi, row_counts) : shard->forward_loop(xi, counts);
    at::autocast::set_autocast_enabled(type, was);
    (y.to(torch::kFloat32) * out_grad).sum().backward();
    return std::make_pair(y.detach().to(torch::kFloat32), xi.grad());
  };
  auto [y_grouped, gx_grouped] = run(grouped, true);
  auto [y_loop, gx_loop] = run(loop, false);
  model::ExpertShardImpl::fault_zero_grouped_output = false;
  GroupedVsLoop d;
  d.y = relative_norm(y_grouped, y_loop);
  d.x_grad = relative_norm(gx_grouped, gx_loop);
  if (grouped->trainable()) {
    d.w_down_grad = relative_norm(grouped->w_down.grad(), loop->w_down.grad());
    d.w_up_grad = relative_norm(grouped->w_up.grad(), loop->w_up.grad());
  }
  std::cout << "grouped_vs_loop_rel " << label << " y=" << d.y << " x_grad=" << d.x_grad
            << " w_down_grad=" << d.w_down_grad << " w_up_grad=" << d.w_up_grad << std::endl;
  return d;
}

}  // namespace some::test
