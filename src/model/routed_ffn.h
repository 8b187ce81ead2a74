#pragma once
// What every routed feed-forward block shares — the SoME layer and the MoE / hash baselines
// (docs/design.md §1, §10): this rank's experts, the dispatcher that brings each (token, expert) slot to
// the rank holding the expert, the optional capacity limit, and the gated combine. A subclass
// decides only the routing: which k experts (N, k) and with which gates (N, k).
//
// Legend: N tokens, d model width, E experts, k = top_k, h = d_expert.
#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "parallel/communicator.h"
#include "parallel/parallel_state.h"
#include "parallel/token_dispatcher.h"
#include "src/model/expert_shard.h"
#include "src/model/feed_forward.h"
#include "src/model/options.h"

namespace some::model {

class RoutedFFN : public FeedForward {
 public:
  // `parallel` (null: one process) decides which experts this rank holds; it must outlive the
  // layer. Frozen experts are the SoME library; trainable ones are the baselines' experts.
  RoutedFFN(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel,
            ExpertShardImpl::Kind kind);

  ExpertShard& experts() { return experts_; }
  const torch::Tensor& last_indices() const { return last_indices_; }  // (N, k) of the latest forward

  // The auxiliary loss of the latest training forward, to be added to the LM loss (undefined:
  // none). Only the MoE baseline with moe.balance = aux_loss has one.
  virtual torch::Tensor aux_loss() const { return {}; }
  // Slots routed to each expert (E,) fp32 by training forwards since the last after_step(); the
  // trainer sums it over all ranks (the global batch) before calling after_step().
  torch::Tensor& load() { return load_; }
  // Called once after every optimizer step on every rank: the gradient-free updates that read
  // the global load (the MoE balancing bias), then the load restarts. The SoME layer's
  // Knowledge Gravity has its own entry point (KeyStore::apply_gravity).
  virtual void after_step() { load_.zero_(); }

  // Training forwards accumulate their statistics; eval and generation forwards must not.
  bool collect_stats = false;
  // Slots this rank's experts dropped for capacity since the last reset (training forwards).
  int64_t dropped_slots = 0;

  double forward_flops_per_token() const override;
  double backward_flops_per_token() const override;

 protected:
  // y (N, d) = sum_j gates[:, j] * expert_{indices[:, j]}(x): dispatch, compute, combine.
  torch::Tensor mix(const torch::Tensor& x, const torch::Tensor& indices, const torch::Tensor& gates);
  // Multiply-adds per token of choosing the experts (query net, scores, gate), fwd and bwd.
  virtual double router_forward_flops() const = 0;
  virtual double router_backward_flops() const = 0;

  ModelOptions opts_;

 private:
  // Expert outputs (R, d) for the dispatched rows, computing at most `capacity` rows per expert
  // (the first ones: lower source rank, then token order); dropped rows give zeros.
  torch::Tensor compute_experts(const torch::Tensor& expert_in, const parallel::DispatchPlan& plan);

  ExpertShard experts_{nullptr};
  std::unique_ptr<parallel::TokenDispatcher> dispatcher_;
  torch::Tensor last_indices_;
  torch::Tensor load_;  // (E,) on the device of the latest forward
};

}  // namespace some::model
