#pragma once
// A routed feed-forward block — the SoME layer and the MoE / hash baselines (docs/design.md §1,
// §10): route -> dispatch -> experts -> combine. The Router (router.h) decides which k experts
// (N, k) and with which gates (N, k); everything after it is shared: this rank's experts, the
// dispatcher that brings each (token, expert) slot to the rank holding the expert, the optional
// capacity limit, and the gated combine.
//
// Legend: N tokens, d model width, E experts, k = top_k, h = d_expert.
#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "parallel/parallel_state.h"
#include "parallel/token_dispatcher.h"
#include "src/model/expert_shard.h"
#include "src/model/feed_forward.h"
#include "src/model/options.h"
#include "src/model/router.h"

namespace some::model {

class RoutedFFN : public FeedForward {
 public:
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids = {}) final;  // (N, d) -> (N, d)

  Router& router() { return *router_; }
  const KeyStore* key_store() const { return router_->key_store(); }  // read-only; null for the baselines
  ExpertShard& experts() { return experts_; }
  const Routing& last_routing() const { return last_; }   // of the latest forward (analytics)
  torch::Tensor aux_loss() const { return router_->aux_loss(); }  // see Router::aux_loss

  // The after-step contract (docs/design.md §3, §5), driven by TransformerImpl::after_step for
  // every layer at once. First: this step's statistics to be summed over all ranks — the load
  // (E,), the slots dropped for capacity (1,), then the router's.
  void step_statistics(std::vector<torch::Tensor>& out);
  // Then, with them summed: the router updates itself and every statistic restarts.
  void after_step(int64_t step, uint64_t seed, parallel::Communicator* world);
  // Slots routed to each expert (E,) fp32 by training forwards since the last after_step().
  const torch::Tensor& load() const { return load_; }
  // Slots this rank's experts dropped for capacity since the last after_step() (all ranks once
  // the statistics are summed); reading it synchronises with the device.
  int64_t dropped_slots() const;

  // Training forwards accumulate their statistics; eval and generation forwards must not.
  bool collect_stats = false;

  double forward_flops_per_token() const override;
  double backward_flops_per_token() const override;

 protected:
  // `parallel` (null: one process) decides which experts this rank holds; it must outlive the
  // layer. Frozen experts are the SoME library; trainable ones are the baselines' experts. The
  // subclass then sets the router (after the experts, so parameters keep their order).
  RoutedFFN(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel,
            ExpertShardImpl::Kind kind);
  // Also registers the options that sit beside any router (after it): expert.output_scale = learnable's
  // per-expert scale and model.shared_expert's dense FFN.
  void set_router(std::unique_ptr<Router> router);

 private:
  // y (N, d) = sum_j gates[:, j] * expert_{indices[:, j]}(x): dispatch, compute, combine.
  torch::Tensor mix(const torch::Tensor& x, const torch::Tensor& indices, const torch::Tensor& gates);
  // Expert outputs (R, d) for the dispatched rows, computing at most `capacity` rows per expert
  // (the first ones: lower source rank, then token order); dropped rows give zeros.
  torch::Tensor compute_experts(const torch::Tensor& expert_in, parallel::DispatchPlan& plan);

  ModelOptions opts_;
  int64_t layer_;
  std::unique_ptr<Router> router_;
  ExpertShard experts_{nullptr};
  std::unique_ptr<parallel::TokenDispatcher> dispatcher_;
  torch::Tensor expert_scale_;                 // (E,) trainable, replicated; expert.output_scale = learnable
  std::shared_ptr<DenseFFN> shared_;           // model.shared_expert > 0
  Routing last_;
  torch::Tensor load_;     // (E,) fp32 on the device of the latest forward
  torch::Tensor dropped_;  // (1,) fp32, beside load_
};

}  // namespace some::model
