#pragma once
// Moves routed tokens to the experts that will compute them and the results back
// (Megatron-Core's route -> dispatch -> compute -> combine). Local work (sorting by expert) is
// kept apart from communication; the metadata travels explicitly from dispatch to combine.
//
// Legend: N tokens on this rank, k = top_k, d model width, M = N*k routed (token, expert) slots
//         sent by this rank, R slots received, P expert-parallel ranks, E_local = E / P.
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "parallel/communicator.h"

namespace some::parallel {

// Rows per local expert: always on the rows' device; on the host only once something needs them
// there (the all-to-all's split sizes, the per-expert loop, the capacity limit) — reading them
// there is a host-device synchronisation on CUDA, which the grouped kernel never needs.
struct RowCounts {
  torch::Tensor device;       // (E_local,) int64
  std::vector<int64_t> host;  // (E_local,) or empty until on_host()
  const std::vector<int64_t>& on_host();
  static RowCounts from_host(std::vector<int64_t> counts, const torch::Device& device);
};

struct DispatchPlan {
  torch::Tensor order;                 // (M,) slot permutation that sorts slots by global expert
  torch::Tensor token_of;              // (M,) source token of each sorted slot
  RowCounts expert_counts;             // (E_local,) received slots per local expert
  int64_t num_tokens = 0;              // N
  std::vector<int64_t> send_rows;      // (P,) slots this rank sends to each EP peer
  std::vector<int64_t> recv_rows;      // (P,) slots this rank receives from each EP peer
  torch::Tensor local_order;           // (R,) received rows regrouped by local expert (undefined: identity)
  int64_t group_slots = 0;             // slots of the whole EP group in this forward (capacity base)
};

class TokenDispatcher {
 public:
  virtual ~TokenDispatcher() = default;
  // x (N, d), indices (N, k) of global experts -> expert input (R, d) grouped by local expert.
  virtual std::pair<torch::Tensor, DispatchPlan> dispatch(const torch::Tensor& x,
                                                          const torch::Tensor& indices) = 0;
  // expert output (R, d) in dispatch order, gates (N, k) -> y (N, d) = sum_k gate * output.
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

// Experts partitioned contiguously over the P ranks of `ep`: slots are sorted by expert (hence
// by owning rank), per-expert counts exchanged, activations sent by all-to-all-v and regrouped
// by local expert; combine runs the reverse exchange. Both exchanges are autograd functions
// whose backward is the opposite exchange, so gradients reach x exactly as in one process.
class AllToAllTokenDispatcher final : public TokenDispatcher {
 public:
  AllToAllTokenDispatcher(int64_t num_experts, Communicator& ep);
  std::pair<torch::Tensor, DispatchPlan> dispatch(const torch::Tensor& x,
                                                  const torch::Tensor& indices) override;
  torch::Tensor combine(const torch::Tensor& expert_out, const torch::Tensor& gates,
                        const DispatchPlan& plan) override;

 private:
  int64_t num_experts_;
  Communicator& ep_;
};

// Differentiable all-to-all-v along dim 0 (backward: the same exchange with the splits swapped).
torch::Tensor differentiable_all_to_all(const torch::Tensor& x, Communicator& comm,
                                        const std::vector<int64_t>& send_rows,
                                        const std::vector<int64_t>& recv_rows);

}  // namespace some::parallel
