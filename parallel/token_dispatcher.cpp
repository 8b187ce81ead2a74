#include "parallel/token_dispatcher.h"

namespace some::parallel {

using torch::Tensor;

std::pair<Tensor, DispatchPlan> LocalTokenDispatcher::dispatch(const Tensor& x,
                                                               const Tensor& indices) {
  const auto k = indices.size(1);
  DispatchPlan plan;
  plan.num_tokens = x.size(0);
  auto flat = indices.reshape({-1});                                              // (M,)
  plan.order = std::get<1>(flat.sort(/*stable=*/std::optional<bool>(true), 0, false));  // (M,)
  plan.token_of = plan.order.div(k, "floor");                                     // (M,)
  // The one host synchronisation of dispatch: the split sizes drive the grouped GEMM loop.
  auto counts = torch::zeros({num_experts_}, flat.options())
                    .index_add_(0, flat, torch::ones_like(flat))
                    .cpu();                                                        // (E,)
  plan.expert_counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + num_experts_);
  return {x.index_select(0, plan.token_of), std::move(plan)};                     // (M, d)
}

Tensor LocalTokenDispatcher::combine(const Tensor& expert_out, const Tensor& gates,
                                     const DispatchPlan& plan) {
  auto g = gates.reshape({-1}).index_select(0, plan.order).unsqueeze(1);         // (M, 1)
  auto weighted = expert_out * g.to(expert_out.scalar_type());                   // (M, d)
  return torch::zeros({plan.num_tokens, expert_out.size(1)}, expert_out.options())
      .index_add(0, plan.token_of, weighted);                                     // (N, d)
}

}  // namespace some::parallel
