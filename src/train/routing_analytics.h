#pragma once
// Routing analytics per SoME layer (docs/design.md §9): load balance (Gini, entropy), dead experts,
// confidence (top-1 score), key geometry (norm, pairwise cosine) and churn between evals.
//
// Legend: E experts, d model width, N evaluated tokens.
#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace some::train {

double gini(const torch::Tensor& counts);             // 0 = perfectly even, -> 1 = one expert
double entropy_nats(const torch::Tensor& counts);     // Shannon entropy of counts / sum
double mean_pairwise_cosine(const torch::Tensor& keys);  // over i != j

struct LayerRouting {
  int64_t layer = 0;
  double gini = 0, entropy = 0, entropy_norm = 0, top1_score = 0, key_norm = 0, key_cos = 0;
  int64_t dead_experts = 0;
  bool has_keys = true;         // SoME layers; the baselines' routers have no keys or scores
  std::optional<double> churn;  // fraction of tokens whose top-1 expert changed since last eval
  nlohmann::json to_json() const;
};

// counts (E,) selections, keys (E, d) (undefined: a router without keys), mean top-1 score.
LayerRouting summarize_routing(int64_t layer, const torch::Tensor& counts, const torch::Tensor& keys,
                               double top1_score);

}  // namespace some::train
