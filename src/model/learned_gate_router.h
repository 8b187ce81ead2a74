#pragma once
// The learned-gate router of the MoE baseline (docs/design.md §10): r = W_g x, p = softmax(r),
// top-k of p (of r + b with moe.balance = bias: the bias steers selection only), gates = the
// selected p renormalised to sum to 1. Balancing by the Switch auxiliary loss
// E * sum_i f_i P_i (f: fraction of this forward's slots routed to i, P: mean gate probability),
// by the selection bias, or not at all.
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>

#include <torch/torch.h>

#include "src/model/options.h"
#include "src/model/router.h"

namespace some::model {

class LearnedGateRouter final : public Router {
 public:

  // Registers `gate` (W_g, E x d, no bias) and the buffer `bias` (E,) on `owner`, the layer.
  LearnedGateRouter(const ModelOptions& opts, torch::nn::Module& owner);

  Routing route(const torch::Tensor& x, const torch::Tensor& token_ids, bool training) override;
  torch::Tensor aux_loss() const override { return aux_loss_; }
  // b_i += bias_rate * sign(mean load - load_i) from the global batch's load (moe.balance = bias).
  void after_step(const AfterStep& context) override;
  double forward_flops() const override { return 2.0 * static_cast<double>(d_model_ * num_experts_); }
  double backward_flops() const override { return 2 * forward_flops(); }

  torch::nn::Linear gate{nullptr};  // W_g (E, d)
  torch::Tensor bias;               // (E,) selection bias; zeros unless moe.balance = bias

 private:
  int64_t d_model_, num_experts_, top_k_;
  MoEBalance balance_;
  double aux_weight_, bias_rate_;
  torch::Tensor aux_loss_;  // weighted, of the latest training forward
};

}  // namespace some::model
