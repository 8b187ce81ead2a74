#pragma once
// SoME layer (SPEC §1): trainable query network -> key store (cosine scores, top-k, gates) ->
// dispatcher -> frozen experts (grouped) -> combine. Knowledge Gravity statistics are
// accumulated as a side effect while `collect_stats` is on.
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "parallel/parallel_state.h"
#include "parallel/token_dispatcher.h"
#include "src/model/expert_shard.h"
#include "src/model/feed_forward.h"
#include "src/model/key_store.h"
#include "src/model/options.h"

namespace some::model {

class SoMELayer final : public FeedForward {
 public:
  // `parallel` (may be null: one process) decides which experts this rank holds and how tokens
  // reach them; it must outlive the layer.
  SoMELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel = nullptr);

  torch::Tensor forward(const torch::Tensor& x) override;  // (N, d) -> (N, d)
  KeyStore* key_store() override { return key_store_.get(); }
  double forward_flops_per_token() const override;
  double backward_flops_per_token() const override;

  torch::Tensor query(const torch::Tensor& x);  // Q(x): (N, d) -> (N, d)
  ExpertShard& experts() { return experts_; }
  const Routing& last_routing() const { return last_; }  // of the latest forward (analytics)

  // Training forwards add to the key statistics; eval and generation forwards must not.
  bool collect_stats = false;
  // Slots this rank's experts dropped for capacity since the last reset (training forwards).
  int64_t dropped_slots = 0;

 private:
  double query_flops_per_token() const;
  // Expert outputs (R, d) for the dispatched rows, computing at most `capacity` rows per expert
  // (the first ones: lower source rank, then token order); dropped rows give zeros.
  torch::Tensor compute_experts(const torch::Tensor& expert_in, const parallel::DispatchPlan& plan);

  ModelOptions opts_;
  torch::nn::Sequential query_{nullptr};
  ExpertShard experts_{nullptr};
  std::unique_ptr<KeyStore> key_store_;
  std::unique_ptr<parallel::TokenDispatcher> dispatcher_;
  Routing last_;
};

}  // namespace some::model
