#pragma once
// SoME layer (docs/design.md §1): trainable query network -> key store (cosine scores, top-k, gates) ->
// dispatcher -> frozen experts (grouped) -> combine (the last three in RoutedFFN). Knowledge
// Gravity statistics are accumulated as a side effect while `collect_stats` is on.
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "parallel/parallel_state.h"
#include "src/model/key_store.h"
#include "src/model/options.h"
#include "src/model/routed_ffn.h"

namespace some::model {

class SoMELayer final : public RoutedFFN {
 public:
  // `parallel` (may be null: one process) decides which experts this rank holds and how tokens
  // reach them; it must outlive the layer.
  SoMELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel = nullptr);

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids = {}) override;  // (N, d) -> (N, d)
  KeyStore* key_store() override { return key_store_.get(); }

  torch::Tensor query(const torch::Tensor& x);  // Q(x): (N, d) -> (N, d)
  const Routing& last_routing() const { return last_; }  // of the latest forward (analytics)

 private:
  double router_forward_flops() const override;
  double router_backward_flops() const override;
  double query_flops_per_token() const;

  torch::nn::Sequential query_{nullptr};
  std::unique_ptr<KeyStore> key_store_;
  Routing last_;
};

}  // namespace some::model
