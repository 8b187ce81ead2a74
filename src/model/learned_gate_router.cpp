#include "src/model/learned_gate_router.h"

#include <ATen/autocast_mode.h>

namespace some::model {

LearnedGateRouter::LearnedGateRouter(const ModelOptions& opts, torch::nn::Module& owner)
    : d_model_(opts.d_model), num_experts_(opts.num_experts), top_k_(opts.top_k),
      balance_(opts.moe.balance), aux_weight_(opts.moe.aux_loss), bias_rate_(opts.moe.bias_rate) {
  gate = owner.register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(d_model_, num_experts_).bias(false)));
  bias = owner.register_buffer("bias", torch::zeros({num_experts_}));
}

Routing LearnedGateRouter::route(const torch::Tensor& x, const torch::Tensor& /*token_ids*/, bool training) {
  torch::Tensor p, indices;
  {
    // The gate runs in fp32 whatever autocast says, like SoME's scores.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    auto r = torch::matmul(x.to(torch::kFloat32), gate->weight.t());         // (N, E)
    p = torch::softmax(r, -1);                                               // (N, E)
    // softmax is monotone: the top-k of p is the top-k of r.
    indices = stable_top_k(balance_ == MoEBalance::kBias ? r.detach() + bias : r.detach(), top_k_);  // (N, k)
  }
  Routing out;
  auto chosen = p.gather(1, indices);                                        // (N, k)
  out.indices = indices;
  out.gates = (chosen / chosen.sum(-1, /*keepdim=*/true)).to(x.scalar_type());  // (N, k)
  out.scores = chosen.detach();
  aux_loss_ = torch::Tensor();
  if (training && balance_ == MoEBalance::kAuxLoss && aux_weight_ > 0) {
    const auto E = static_cast<double>(num_experts_);
    auto slots = torch::zeros({num_experts_}, p.options())
                     .index_add_(0, indices.reshape({-1}), torch::ones({indices.numel()}, p.options()));
    auto f = slots / static_cast<double>(indices.numel());                   // (E,) no grad
    aux_loss_ = aux_weight_ * E * (f * p.mean(0)).sum();                     // ()
  }
  return out;
}

void LearnedGateRouter::after_step(const AfterStep& c) {
  if (balance_ != MoEBalance::kBias) return;
  update_selection_bias(bias, *c.load, bias_rate_);
}

}  // namespace some::model
