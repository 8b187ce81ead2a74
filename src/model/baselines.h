#pragma once
// The routed baselines SoME is measured against (docs/design.md §10), in the same trainer and sharded the
// same way: a learned-gate MoE and hash routing. Both train their experts; only the routing
// differs from SoME's (RoutedFFN does the rest).
//
// Legend: N tokens, d model width, E experts, k = top_k, V vocabulary.
#include <cstdint>

#include <torch/torch.h>

#include "parallel/parallel_state.h"
#include "src/model/options.h"
#include "src/model/routed_ffn.h"

namespace some::model {

// The top-k experts of each row of `scores` (N, E), best first, ties to the lower index
// (identical on every rank and at every world size).
torch::Tensor stable_top_k(const torch::Tensor& scores, int64_t k);

// Learned gate: r = W_g x, p = softmax(r), top-k of p (of r + b with moe.balance = bias: the bias
// steers selection only), gates = the selected p renormalised to sum to 1. Balancing by the
// Switch auxiliary loss E * sum_i f_i P_i (f: fraction of this forward's slots routed to i, P:
// mean gate probability), by the bias, or not at all.
class MoELayer final : public RoutedFFN {
 public:
  MoELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel = nullptr);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids = {}) override;
  torch::Tensor aux_loss() const override { return aux_loss_; }
  // b_i += bias_rate * sign(mean load - load_i) from the global batch's load (moe.balance = bias).
  void after_step() override;

  torch::nn::Linear gate{nullptr};  // W_g (E, d), no bias
  torch::Tensor bias;               // (E,) selection bias; zeros unless moe.balance = bias

 private:
  double router_forward_flops() const override { return 2.0 * opts_.d_model * opts_.num_experts; }
  double router_backward_flops() const override { return 2 * router_forward_flops(); }
  torch::Tensor aux_loss_;  // weighted, of the latest training forward
};

// Token id t goes to the k distinct experts given by hash_routing_table(): fixed, equal gates,
// nothing to learn in the router — the floor every learned router must beat.
class HashLayer final : public RoutedFFN {
 public:
  HashLayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel = nullptr);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids = {}) override;

 private:
  double router_forward_flops() const override { return 0; }
  double router_backward_flops() const override { return 0; }
  torch::Tensor table_;  // (V, k) int64, derived from model.seed (not state)
};

// (V, k): row t holds hash(seed, layer, t, j) mod E for j < k, a collision moving on to the next
// expert not yet taken (so the k experts are distinct).
torch::Tensor hash_routing_table(int64_t vocab, int64_t num_experts, int64_t top_k, uint64_t seed, int64_t layer);

}  // namespace some::model
