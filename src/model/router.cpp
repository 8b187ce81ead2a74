#include "src/model/router.h"

namespace some::model {

torch::Tensor stable_top_k(const torch::Tensor& scores, int64_t k) {
  // A stable descending sort keeps the lower index first among equal scores (torch::topk makes
  // no such promise).
  auto order = std::get<1>(scores.sort(/*stable=*/std::optional<bool>(true), /*dim=*/-1, /*descending=*/true));
  return order.narrow(1, 0, k).contiguous();                                   // (N, k)
}

}  // namespace some::model
