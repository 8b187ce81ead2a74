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
  // sum_{i != j} k_i . k_j = |sum_i k_i|^2 - sum_i |k_i|^2: O(E d), never the (E, E) matrix
  // (17 GB at 65,536 experts).
  const double total = kn.sum(0).pow(2).sum().item<double>(), self = kn.pow(2).sum().item<double>();
  return (total - self) / static_cast<double>(E * (E - 1));
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

void CoactivationPairs::add(const torch::Tensor& indices) {
  const auto k = indices.size(1);
  if (k < 2) return;
  auto idx = indices.to(torch::kCPU, torch::kLong);
  for (int64_t a = 0; a < k; ++a) {
    for (int64_t b = a + 1; b < k; ++b) {
      auto i = torch::minimum(idx.select(1, a), idx.select(1, b)), j = torch::maximum(idx.select(1, a), idx.select(1, b));
      pending_.push_back(i * E_ + j);
      pending_size_ += i.size(0);
    }
  }
  if (pending_size_ > (int64_t{1} << 22)) merge();  // bounded: ~32 MiB of pending ids
}

void CoactivationPairs::merge() {
  if (pending_.empty()) return;
  auto ids = torch::cat(pending_);
  auto counts = torch::ones_like(ids);
  if (ids_.defined()) {
    ids = torch::cat({ids_, ids});
    counts = torch::cat({counts_, counts});
  }
  auto [unique, inverse, ignored] = torch::_unique2(ids, /*sorted=*/true, /*return_inverse=*/true);
  counts_ = torch::zeros_like(unique).index_add_(0, inverse, counts);
  ids_ = unique;
  pending_.clear();
  pending_size_ = 0;
}

torch::Tensor CoactivationPairs::strongest(int64_t max_pairs, parallel::Communicator& world) {
  merge();
  auto ids = ids_.defined() ? ids_ : torch::empty({0}, torch::kLong);
  auto counts = counts_.defined() ? counts_ : torch::empty({0}, torch::kLong);
  if (world.world_size() > 1) {
    // Every rank's (id, count) rows, padded to the longest with id -1, count 0, then merged.
    auto sizes = world.allgather(torch::tensor({ids.size(0)}, torch::kLong)).reshape({-1});
    const auto longest = sizes.max().item<int64_t>();
    auto rows = torch::stack({torch::full({longest}, -1, torch::kLong), torch::zeros({longest}, torch::kLong)}, 1);
    rows.narrow(0, 0, ids.size(0)).copy_(torch::stack({ids, counts}, 1));
    auto all = world.allgather(rows).reshape({-1, 2});
    all = all.index_select(0, (all.select(1, 0) >= 0).nonzero().view({-1}));
    auto [unique, inverse, ignored] = torch::_unique2(all.select(1, 0).contiguous(), true, true);
    counts = torch::zeros_like(unique).index_add_(0, inverse, all.select(1, 1).contiguous());
    ids = unique;
  }
  // ids ascend; a stable sort by count descending keeps ties in (i, j) order.
  auto order = std::get<1>(counts.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  order = order.narrow(0, 0, std::min<int64_t>(max_pairs, order.size(0)));
  auto top = ids.index_select(0, order);
  return torch::stack({top.div(E_, "floor"), top.remainder(E_), counts.index_select(0, order)}, 1);  // (M, 3)
}

}  // namespace some::train
