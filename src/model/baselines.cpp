#include "src/model/baselines.h"

#include <ATen/autocast_mode.h>

#include "common/check.h"
#include "common/errors.h"
#include "src/model/init.h"

namespace some::model {

torch::Tensor stable_top_k(const torch::Tensor& scores, int64_t k) {
  auto order = std::get<1>(scores.sort(/*stable=*/std::optional<bool>(true), /*dim=*/-1, /*descending=*/true));
  return order.narrow(1, 0, k).contiguous();                                   // (N, k)
}

MoELayer::MoELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel)
    : RoutedFFN(opts, layer, parallel, ExpertShardImpl::Kind::kTrainable) {
  gate = register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(opts.d_model, opts.num_experts).bias(false)));
  bias = register_buffer("bias", torch::zeros({opts.num_experts}));
}

torch::Tensor MoELayer::forward(const torch::Tensor& x, const torch::Tensor& /*token_ids*/) {
  torch::Tensor p, indices;
  {
    // The gate runs in fp32 whatever autocast says, like SoME's scores.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    auto r = torch::matmul(x.to(torch::kFloat32), gate->weight.t());         // (N, E)
    p = torch::softmax(r, -1);                                               // (N, E)
    // softmax is monotone: the top-k of p is the top-k of r.
    auto select = opts_.moe.balance == "bias" ? r.detach() + bias : r.detach();
    indices = stable_top_k(select, opts_.top_k);                             // (N, k)
  }
  auto chosen = p.gather(1, indices);                                        // (N, k)
  auto gates = chosen / chosen.sum(-1, /*keepdim=*/true);                    // (N, k)
  aux_loss_ = torch::Tensor();
  if (collect_stats && opts_.moe.balance == "aux_loss" && opts_.moe.aux_loss > 0) {
    const auto E = static_cast<double>(opts_.num_experts);
    auto slots = torch::zeros({opts_.num_experts}, p.options())
                     .index_add_(0, indices.reshape({-1}), torch::ones({indices.numel()}, p.options()));
    auto f = slots / static_cast<double>(indices.numel());                   // (E,) no grad
    aux_loss_ = opts_.moe.aux_loss * E * (f * p.mean(0)).sum();             // ()
  }
  return mix(x, indices, gates.to(x.scalar_type()));                         // (N, d)
}

void MoELayer::after_step() {
  if (opts_.moe.balance == "bias") {
    torch::NoGradGuard no_grad;
    auto& l = load();
    bias.add_(torch::sign(l.mean() - l).to(bias.device()), opts_.moe.bias_rate);
  }
  RoutedFFN::after_step();
}

HashLayer::HashLayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel)
    : RoutedFFN(opts, layer, parallel, ExpertShardImpl::Kind::kTrainable),
      table_(hash_routing_table(opts.vocab_size, opts.num_experts, opts.top_k, opts.seed, layer)) {}

torch::Tensor HashLayer::forward(const torch::Tensor& x, const torch::Tensor& token_ids) {
  SOME_REQUIRE(token_ids.defined() && token_ids.numel() == x.size(0), Error,
               "hash routing needs the token id of each of the {} rows", x.size(0));
  if (table_.device() != x.device()) table_ = table_.to(x.device());
  auto indices = table_.index_select(0, token_ids.reshape({-1}));             // (N, k)
  auto gates = torch::full(indices.sizes(), 1.0 / static_cast<double>(opts_.top_k), x.options());
  return mix(x, indices, gates);                                             // (N, d)
}

torch::Tensor hash_routing_table(int64_t vocab, int64_t num_experts, int64_t top_k, uint64_t seed, int64_t layer) {
  SOME_REQUIRE(top_k <= num_experts, ConfigError, "model.top_k = {} exceeds model.num_experts = {}", top_k,
               num_experts);
  auto table = torch::empty({vocab, top_k}, torch::kLong);
  auto t = table.accessor<int64_t, 2>();
  for (int64_t token = 0; token < vocab; ++token) {
    for (int64_t j = 0; j < top_k; ++j) {
      auto e = static_cast<int64_t>(seeded_hash(seed, layer, token, j) % static_cast<uint64_t>(num_experts));
      auto taken = [&](int64_t c) {
        for (int64_t i = 0; i < j; ++i) if (t[token][i] == c) return true;
        return false;
      };
      while (taken(e)) e = (e + 1) % num_experts;
      t[token][j] = e;
    }
  }
  return table;
}

}  // namespace some::model
