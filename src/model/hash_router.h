#pragma once
// Hash routing, the floor every learned router must beat (docs/design.md §10): token id t goes
// to the k distinct experts of row t of a fixed table, with equal gates. Nothing to learn,
// nothing to update.
//
// Legend: N tokens, E experts, k = top_k, V vocabulary.
#include <cstdint>

#include <torch/torch.h>

#include "src/model/options.h"
#include "src/model/router.h"

namespace some::model {

class HashRouter final : public Router {
 public:
  HashRouter(const ModelOptions& opts, int64_t layer);
  Routing route(const torch::Tensor& x, const torch::Tensor& token_ids, bool training) override;
  void after_step(const AfterStep& /*context*/) override {}
  double forward_flops() const override { return 0; }
  double backward_flops() const override { return 0; }

 private:
  int64_t top_k_;
  torch::Tensor table_;  // (V, k) int64, derived from model.seed (not state)
};

// (V, k): row t holds to_range(hash(seed, layer, t, j), E) for j < k (common/random.h), a
// collision moving on to the next expert not yet taken (so the k experts are distinct).
torch::Tensor hash_routing_table(int64_t vocab, int64_t num_experts, int64_t top_k, uint64_t seed, int64_t layer);

}  // namespace some::model
