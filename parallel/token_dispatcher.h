#pragma once
// Moves routed tokens to the experts that will compute them and the results back
// (Megatron-Core's route -> dispatch -> compute -> combine). Local work (sorting by expert) is
// kept apart from communication; the metadata travels explicitly from dispatch to combine.
//
// Legend: N tokens, k = top_k, d model width, M = N*k routed (token, expert) slots,
//         E_local experts held by this rank.
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace some::parallel {

struct DispatchPlan {
  torch::Tensor order;                 // (M,) slot permutation that sorts slots by expert
  torch::Tensor token_of;              // (M,) source token of each sorted slot
  std::vector<int64_t> expert_counts;  // (E_local,) slots per local expert, in sorted order
  int64_t num_tokens = 0;              // N
};

class TokenDispatcher {
 public:
  virtual ~TokenDispatcher() = default;
  // x (N, d), indices (N, k) -> expert input (M, d) grouped by local expert, and the plan.
  virtual std::pair<torch::Tensor, DispatchPlan> dispatch(const torch::Tensor& x,
                                                          const torch::Tensor& indices) = 0;
  // expert output (M, d) in dispatch order, gates (N, k) -> y (N, d) = sum_k gate * output.
  virtual torch::Tensor combine(const torch::Tensor& expert_out, const torch::Tensor& gates,
                                const DispatchPlan& plan) = 0;
};

// One process holds every expert: dispatch is a stable sort of the slots by expert.
class LocalTokenDispatcher final : public TokenDispatcher {
 public:
  explicit LocalTokenDispatcher(int64_t num_experts) : num_experts_(num_experts) {}
  std::pair<torch::Tensor, DispatchPlan> dispatch(const torch::Tensor& x,
                                                  const torch::Tensor& indices) override;
  torch::Tensor combine(const torch::Tensor& expert_out, const torch::Tensor& gates,
                        const DispatchPlan& plan) override;

 private:
  int64_t num_experts_;
};

}  // namespace some::parallel
