#include "src/model/routed_ffn.h"

#include <cmath>

namespace some::model {

RoutedFFN::RoutedFFN(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel,
                     ExpertShardImpl::Kind kind)
    : opts_(opts), layer_(layer) {
  const auto E = opts.num_experts;
  // This rank's contiguous share of the experts (docs/design.md §5).
  const int64_t first = parallel ? parallel->first_local_expert(E) : 0;
  const int64_t local = parallel ? parallel->num_local_experts(E) : E;
  experts_ = register_module("experts", ExpertShard(layer, first, local, opts.d_model, opts.d_expert, opts.expert,
                                                    opts.seed, kind, opts.n_layers));
  load_ = torch::zeros({E});
  dropped_ = torch::zeros({1});
  if (parallel && parallel->ep_size() > 1) {
    dispatcher_ = std::make_unique<parallel::AllToAllTokenDispatcher>(E, parallel->ep());
  } else {
    dispatcher_ = std::make_unique<parallel::LocalTokenDispatcher>(E);
  }
}

void RoutedFFN::set_router(std::unique_ptr<Router> router) {
  router_ = std::move(router);
  if (opts_.expert.output_scale == Scale::kLearnable) expert_scale_ = register_parameter("expert_scale", torch::ones({opts_.num_experts}));
  if (opts_.shared_expert > 0) {
    shared_ = register_module("shared", std::make_shared<DenseFFN>(opts_.d_model, opts_.shared_expert,
                                                                   opts_.expert.activation));
  }
}

torch::Tensor RoutedFFN::forward(const torch::Tensor& x, const torch::Tensor& token_ids) {
  last_ = router_->route(x, token_ids, collect_stats);                  // (N, k) indices, gates
  auto gates = last_.gates;                                              // (N, k)
  if (expert_scale_.defined()) {
    // Gate j of a token times the scale of the expert it chose: expert e's output is scaled by s_e.
    gates = gates * expert_scale_.index_select(0, last_.indices.reshape({-1})).view_as(gates).to(gates.scalar_type());
  }
  auto y = mix(x, last_.indices, gates);                                 // (N, d)
  return shared_ ? y + shared_->forward(x) : y;
}

torch::Tensor RoutedFFN::mix(const torch::Tensor& x, const torch::Tensor& indices, const torch::Tensor& gates) {
  if (collect_stats) {
    torch::NoGradGuard no_grad;
    if (load_.device() != indices.device()) {
      load_ = load_.to(indices.device());
      dropped_ = dropped_.to(indices.device());
    }
    load_.index_add_(0, indices.reshape({-1}), torch::ones({indices.numel()}, load_.options()));
  }
  // Rows travel in the experts' compute dtype (bf16 under autocast: half the bytes through the
  // gather and the all-to-all); the gated combine sums in the gates' fp32.
  auto [expert_in, plan] = dispatcher_->dispatch(x.to(compute_dtype(x)), indices);  // (N*k, d) by expert
  auto expert_out = compute_experts(expert_in, plan);                    // (R, d)
  return dispatcher_->combine(expert_out, gates, plan);                  // (N, d) in the gates' dtype
}

torch::Tensor RoutedFFN::compute_experts(const torch::Tensor& expert_in, parallel::DispatchPlan& plan) {
  if (opts_.capacity_factor <= 0) return experts_->forward(expert_in, plan.expert_counts);  // dropless
  const auto capacity = static_cast<int64_t>(
      std::ceil(opts_.capacity_factor * static_cast<double>(plan.group_slots) / static_cast<double>(opts_.num_experts)));
  std::vector<int64_t> kept_counts, kept_rows;
  int64_t offset = 0, dropped = 0;
  for (auto count : plan.expert_counts.on_host()) {
    const auto kept = std::min(count, capacity);
    for (int64_t i = 0; i < kept; ++i) kept_rows.push_back(offset + i);
    kept_counts.push_back(kept);
    dropped += count - kept;
    offset += count;
  }
  if (collect_stats && dropped > 0) dropped_.add_(static_cast<double>(dropped));
  if (dropped == 0) return experts_->forward(expert_in, plan.expert_counts);
  auto rows = torch::tensor(kept_rows, torch::dtype(torch::kLong).device(expert_in.device()));
  auto kept_out = experts_->forward(expert_in.index_select(0, rows), kept_counts);    // (R_kept, d)
  return torch::zeros_like(expert_in).index_copy(0, rows, kept_out);                  // (R, d)
}

void RoutedFFN::step_statistics(std::vector<torch::Tensor>& out) {
  out.push_back(load_);
  out.push_back(dropped_);
  router_->step_statistics(out);
}

void RoutedFFN::after_step(int64_t step, uint64_t seed, parallel::Communicator* world) {
  router_->after_step({layer_, step, seed, &load_, world});
  load_.zero_();
  dropped_.zero_();
}

int64_t RoutedFFN::dropped_slots() const { return static_cast<int64_t>(dropped_.item<double>()); }

double RoutedFFN::forward_flops_per_token() const {
  const double d = opts_.d_model, k = opts_.top_k, h = opts_.d_expert;
  return router_->forward_flops() + k * 2 * (2 * d * h) + (shared_ ? shared_->forward_flops_per_token() : 0.0);
}

double RoutedFFN::backward_flops_per_token() const {
  const double d = opts_.d_model, k = opts_.top_k, h = opts_.d_expert;
  // Input gradients always; weight gradients only for trainable experts.
  const double experts = k * 2 * (2 * d * h) * (experts_->trainable() ? 2 : 1);
  return router_->backward_flops() + experts + (shared_ ? shared_->backward_flops_per_token() : 0.0);
}

}  // namespace some::model
