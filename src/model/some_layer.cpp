#include "src/model/some_layer.h"

#include <cmath>

#include "src/model/init.h"

namespace some::model {

namespace nn = torch::nn;

SoMELayer::SoMELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel)
    : RoutedFFN(opts, layer, parallel, ExpertShardImpl::Kind::kFrozen) {
  const auto d = opts.d_model, E = opts.num_experts;
  if (opts.router.query == "mlp") {
    const auto hidden = opts.router.mlp_hidden > 0 ? opts.router.mlp_hidden : 2 * d;
    query_ = register_module("query", nn::Sequential(nn::Linear(d, hidden), nn::GELU(),
                                                     nn::Linear(hidden, d)));
  } else {
    query_ = register_module("query", nn::Sequential(nn::Linear(d, d)));
  }
  // Every rank holds all keys (docs/design.md §5).
  auto keys = register_buffer("keys", init_keys(E, d, opts.seed, layer));
  // EMA usage starts at the fair share (1) so inertia and restart thresholds mean the same from
  // step 1; cumulative usage counts from 0.
  auto usage = register_buffer("usage", opts.gravity.usage == "ema" ? torch::ones({E}) : torch::zeros({E}));
  key_store_ = std::make_unique<KeyStore>(keys, usage, opts.top_k, opts.router, opts.gravity);
}

torch::Tensor SoMELayer::query(const torch::Tensor& x) { return query_->forward(x); }

torch::Tensor SoMELayer::forward(const torch::Tensor& x, const torch::Tensor& /*token_ids*/) {
  auto q = query(x);                                                   // (N, d)
  last_ = key_store_->route(q);                                        // (N, k) indices, gates
  if (collect_stats) key_store_->accumulate(last_);
  return mix(x, last_.indices, last_.gates);                           // (N, d)
}

double SoMELayer::query_flops_per_token() const {
  const double d = opts_.d_model;
  const double dq = opts_.router.mlp_hidden > 0 ? opts_.router.mlp_hidden : 2 * d;
  return opts_.router.query == "mlp" ? 2 * (2 * d * dq) : 2 * d * d;
}

double SoMELayer::router_forward_flops() const {
  return query_flops_per_token() + 2.0 * opts_.d_model * opts_.num_experts;  // query net, scores
}

double SoMELayer::router_backward_flops() const {
  // Query net: input and weight gradients; scores: query gradient only.
  return 2 * query_flops_per_token() + 2.0 * opts_.d_model * opts_.num_experts;
}

}  // namespace some::model
