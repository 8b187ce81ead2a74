#include "src/train/routing_analytics.h"

#include <cmath>

namespace some::train {

double gini(const torch::Tensor& counts) {
  auto x = std::get<0>(counts.to(torch::kFloat64).flatten().sort());  // ascending
  const auto n = x.size(0);
  const double total = x.sum().item<double>();
  if (n == 0 || total <= 0) return 0.0;
  auto rank = torch::arange(1, n + 1, torch::kFloat64);
  return ((2 * rank - n - 1) * x).sum().item<double>() / (static_cast<double>(n) * total);
}

double entropy_nats(const torch::Tensor& counts) {
  auto x = counts.to(torch::kFloat64).flatten();
  const double total = x.sum().item<double>();
  if (total <= 0) return 0.0;
  auto p = x / total;
  return -torch::where(p > 0, p * p.log(), torch::zeros_like(p)).sum().item<double>();
}

double mean_pairwise_cosine(const torch::Tensor& keys) {
  const auto E = keys.size(0);
  if (E < 2) return 1.0;
  auto kn = torch::nn::functional::normalize(keys.to(torch::kFloat64),
                                             torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto cos = torch::matmul(kn, kn.t());
  return (cos.sum().item<double>() - cos.diagonal().sum().item<double>()) /
         static_cast<double>(E * (E - 1));
}

LayerRouting summarize_routing(int64_t layer, const torch::Tensor& counts, const torch::Tensor& keys,
                               double top1_score) {
  torch::NoGradGuard no_grad;
  auto c = counts.detach().cpu();
  LayerRouting r;
  r.layer = layer;
  r.gini = gini(c);
  r.entropy = entropy_nats(c);
  r.entropy_norm = c.numel() > 1 ? r.entropy / std::log(static_cast<double>(c.numel())) : 0.0;
  r.dead_experts = (c == 0).sum().item<int64_t>();
  r.top1_score = top1_score;
  r.has_keys = keys.defined();
  if (r.has_keys) {
    auto k = keys.detach().cpu();
    r.key_norm = k.norm(2, 1).mean().item<double>();
    r.key_cos = mean_pairwise_cosine(k);
  }
  return r;
}

nlohmann::json LayerRouting::to_json() const {
  nlohmann::json j = {{"layer", layer},         {"gini", gini},
                      {"entropy", entropy},     {"entropy_norm", entropy_norm},
                      {"dead_experts", dead_experts}};
  if (has_keys) {
    j["top1_score"] = top1_score;
    j["key_norm"] = key_norm;
    j["key_cos"] = key_cos;
  }
  j["churn"] = churn ? nlohmann::json(*churn) : nlohmann::json(nullptr);
  return j;
}

}  // namespace some::train
