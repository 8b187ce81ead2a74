#include "src/model/key_store_router.h"

#include <cmath>

#include "common/random.h"
#include "src/model/init.h"

namespace some::model {

namespace nn = torch::nn;

KeyStoreRouter::KeyStoreRouter(const ModelOptions& opts, int64_t layer, nn::Module& owner)
    : d_model_(opts.d_model), num_experts_(opts.num_experts),
      query_hidden_(opts.router.query == QueryNet::kMlp ? (opts.router.mlp_hidden > 0 ? opts.router.mlp_hidden : 2 * opts.d_model)
                                               : 0) {
  const auto d = opts.d_model, E = opts.num_experts;
  if (query_hidden_ > 0) {
    query_ = owner.register_module("query", nn::Sequential(nn::Linear(d, query_hidden_), nn::GELU(),
                                                           nn::Linear(query_hidden_, d)));
  } else {
    query_ = owner.register_module("query", nn::Sequential(nn::Linear(d, d)));
  }
  // Every rank holds all keys (docs/design.md §5).
  auto keys = owner.register_buffer("keys", init_keys(E, d, opts.seed, layer));
  // EMA usage starts at the fair share (1) so inertia and restart thresholds mean the same from
  // step 1; cumulative usage counts from 0.
  auto usage = owner.register_buffer("usage", opts.gravity.usage == UsageTracking::kEma ? torch::ones({E}) : torch::zeros({E}));
  key_store_ = std::make_unique<KeyStore>(keys, usage, opts.top_k, opts.router, opts.gravity);
  // Router options (docs/design.md §1): replicated like the query network and the keys.
  if (opts.router.gate_scale == Scale::kLearnable) {
    key_store_->set_gate_log_scale(
        owner.register_parameter("gate_log_scale", torch::full({1}, std::log(1.0 / opts.router.temperature))));
  }
  if (opts.router.balance == RouterBalance::kBias) {
    selection_bias_ = owner.register_buffer("selection_bias", torch::zeros({E}));
    key_store_->set_selection_bias(selection_bias_);
  }
  if (opts.router.search == KeySearch::kIvf) {
    key_store_->set_index_state(
        owner.register_buffer("ivf_centres", torch::zeros({ivf_list_count(opts.router.ivf_lists, E), d})));
  }
  key_init_from_data_ = opts.router.key_init == KeyInit::kData;
  bias_rate_ = opts.router.bias_rate;
}

Routing KeyStoreRouter::route(const torch::Tensor& x, const torch::Tensor& /*token_ids*/, bool training) {
  auto routing = key_store_->route(query(x));                          // (N, k) indices, gates
  if (training) key_store_->accumulate(routing);
  return routing;
}

void KeyStoreRouter::step_statistics(std::vector<torch::Tensor>& out) {
  out.push_back(key_store_->stats().flat());
  out.push_back(key_store_->top1_sum());
}

uint64_t KeyStoreRouter::update_seed(const AfterStep& c) {
  return hash_u64(c.seed, static_cast<uint64_t>(c.step), static_cast<uint64_t>(c.layer));
}

void KeyStoreRouter::after_step(const AfterStep& c) {
  const auto seed = update_seed(c);
  if (key_init_from_data_ && c.step == 1) {
    key_store_->init_keys_from_queries(seed, c.world);
  } else {
    key_store_->apply_gravity(seed, c.world);
  }
  if (selection_bias_.defined()) update_selection_bias(selection_bias_, *c.load, bias_rate_);
}

void KeyStoreRouter::adapt(const AfterStep& c) {
  // Always Knowledge Gravity (never the k-means initialisation of router.key_init = data): the
  // keys adapt to what was read, they are not re-initialised.
  key_store_->apply_gravity(update_seed(c), c.world);
}

void KeyStoreRouter::load_keys(const torch::Tensor& keys, const torch::Tensor& usage) {
  torch::NoGradGuard no_grad;
  // In place: the key store and the layer's registered buffers are the same tensors.
  key_store_->keys().copy_(keys);
  key_store_->usage().copy_(usage);
}

double KeyStoreRouter::query_flops() const {
  const double d = static_cast<double>(d_model_), dq = static_cast<double>(query_hidden_);
  return query_hidden_ > 0 ? 2 * (2 * d * dq) : 2 * d * d;
}

double KeyStoreRouter::forward_flops() const {
  return query_flops() + 2.0 * static_cast<double>(d_model_ * num_experts_);  // query net, scores
}

double KeyStoreRouter::backward_flops() const {
  // Query net: input and weight gradients; scores: query gradient only.
  return 2 * query_flops() + 2.0 * static_cast<double>(d_model_ * num_experts_);
}

}  // namespace some::model
