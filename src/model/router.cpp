#include "src/model/router.h"

#include <limits>

namespace some::model {

torch::Tensor stable_top_k(const torch::Tensor& scores, int64_t k) {
  // torch::topk makes no promise among equal scores. For a small k, k rounds of argmax (which
  // returns the first of equal maxima) with each winner masked out — k passes over (N, E)
  // instead of a sort of every row; otherwise a stable descending sort. The two agree for finite
  // scores (every router's are: cosines, gate probabilities, logits).
  if (k <= 8) {
    auto remaining = scores.detach().clone();                                  // (N, E)
    std::vector<torch::Tensor> picked;
    for (int64_t j = 0; j < k; ++j) {
      picked.push_back(remaining.argmax(1, /*keepdim=*/true));                  // (N, 1)
      if (j + 1 < k) remaining.scatter_(1, picked.back(), -std::numeric_limits<float>::infinity());
    }
    return torch::cat(picked, 1);                                              // (N, k)
  }
  auto order = std::get<1>(scores.sort(/*stable=*/std::optional<bool>(true), /*dim=*/-1, /*descending=*/true));
  return order.narrow(1, 0, k).contiguous();                                   // (N, k)
}

void update_selection_bias(torch::Tensor& bias, const torch::Tensor& load, double rate) {
  torch::NoGradGuard no_grad;
  bias.add_(torch::sign(load.mean() - load).to(bias.device()), rate);
}

}  // namespace some::model
