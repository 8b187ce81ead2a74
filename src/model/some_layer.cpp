#include "src/model/some_layer.h"

#include <cmath>

#include "src/model/init.h"

namespace some::model {

namespace nn = torch::nn;

SoMELayer::SoMELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel)
    : opts_(opts) {
  const auto d = opts.d_model, E = opts.num_experts;
  if (opts.router.query == "mlp") {
    const auto hidden = opts.router.mlp_hidden > 0 ? opts.router.mlp_hidden : 2 * d;
    query_ = register_module("query", nn::Sequential(nn::Linear(d, hidden), nn::GELU(),
                                                     nn::Linear(hidden, d)));
  } else {
    query_ = register_module("query", nn::Sequential(nn::Linear(d, d)));
  }
  // This rank's contiguous share of the experts (SPEC §5); every rank holds all keys.
  const int64_t first = parallel ? parallel->first_local_expert(E) : 0;
  const int64_t local = parallel ? parallel->num_local_experts(E) : E;
  experts_ = register_module("experts", ExpertShard(layer, first, local, d, opts.d_expert, opts.expert, opts.seed));
  auto keys = register_buffer("keys", init_keys(E, d, opts.seed, layer));
  // EMA usage starts at the fair share (1) so inertia and restart thresholds mean the same from
  // step 1; cumulative usage counts from 0.
  auto usage = register_buffer("usage", opts.gravity.usage == "ema" ? torch::ones({E}) : torch::zeros({E}));
  key_store_ = std::make_unique<KeyStore>(keys, usage, opts.top_k, opts.router, opts.gravity);
  if (parallel && parallel->ep_size() > 1) {
    dispatcher_ = std::make_unique<parallel::AllToAllTokenDispatcher>(E, parallel->ep());
  } else {
    dispatcher_ = std::make_unique<parallel::LocalTokenDispatcher>(E);
  }
}

torch::Tensor SoMELayer::query(const torch::Tensor& x) { return query_->forward(x); }

torch::Tensor SoMELayer::forward(const torch::Tensor& x) {
  auto q = query(x);                                                   // (N, d)
  last_ = key_store_->route(q);                                        // (N, k) indices, gates
  if (collect_stats) key_store_->accumulate(last_);
  auto [expert_in, plan] = dispatcher_->dispatch(x, last_.indices);    // (N*k, d) by expert
  auto expert_out = compute_experts(expert_in, plan);                  // (R, d)
  return dispatcher_->combine(expert_out, last_.gates, plan);          // (N, d)
}

torch::Tensor SoMELayer::compute_experts(const torch::Tensor& expert_in, const parallel::DispatchPlan& plan) {
  if (opts_.capacity_factor <= 0) return experts_->forward(expert_in, plan.expert_counts);  // dropless
  const auto capacity = static_cast<int64_t>(
      std::ceil(opts_.capacity_factor * static_cast<double>(plan.group_slots) / static_cast<double>(opts_.num_experts)));
  std::vector<int64_t> kept_counts, kept_rows;
  int64_t offset = 0, dropped = 0;
  for (auto count : plan.expert_counts) {
    const auto kept = std::min(count, capacity);
    for (int64_t i = 0; i < kept; ++i) kept_rows.push_back(offset + i);
    kept_counts.push_back(kept);
    dropped += count - kept;
    offset += count;
  }
  if (collect_stats) dropped_slots += dropped;
  if (dropped == 0) return experts_->forward(expert_in, plan.expert_counts);
  auto rows = torch::tensor(kept_rows, torch::dtype(torch::kLong).device(expert_in.device()));
  auto kept_out = experts_->forward(expert_in.index_select(0, rows), kept_counts);    // (R_kept, d)
  return torch::zeros_like(expert_in).index_copy(0, rows, kept_out);                  // (R, d)
}

double SoMELayer::query_flops_per_token() const {
  const double d = opts_.d_model;
  const double dq = opts_.router.mlp_hidden > 0 ? opts_.router.mlp_hidden : 2 * d;
  return opts_.router.query == "mlp" ? 2 * (2 * d * dq) : 2 * d * d;
}

double SoMELayer::forward_flops_per_token() const {
  const double d = opts_.d_model, E = opts_.num_experts, k = opts_.top_k, h = opts_.d_expert;
  return query_flops_per_token() + 2 * d * E /* scores */ + k * 2 * (2 * d * h) /* experts */;
}

double SoMELayer::backward_flops_per_token() const {
  const double d = opts_.d_model, E = opts_.num_experts, k = opts_.top_k, h = opts_.d_expert;
  // Query net: input and weight gradients; scores: query gradient only; frozen experts: input
  // gradient only (no weight gradient).
  return 2 * query_flops_per_token() + 2 * d * E + k * 2 * (2 * d * h);
}

}  // namespace some::model
