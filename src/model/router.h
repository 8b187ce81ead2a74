#pragma once
// The routing half of a routed feed-forward block (docs/design.md §1, §10): which k experts each
// token goes to and with which gates. A RoutedFFN is route -> dispatch -> experts -> combine;
// the Router decides the first step and owns whatever state that decision learns or keeps —
// the SoME key store (key_store_router.h), the learned gate (learned_gate_router.h), the hash
// table (hash_router.h). The dispatcher and experts never see which router chose.
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "parallel/communicator.h"

namespace some::model {

class KeyStore;

// What a router decided for N tokens.
struct Routing {
  torch::Tensor indices;  // (N, k) int64, selected experts, best first
  torch::Tensor gates;    // (N, k) mixing weights; carry the gradient back into the router
  torch::Tensor scores;   // (N, k) the selected scores, detached (undefined: hash routing)
  torch::Tensor queries;  // (N, d) fp32 normalised queries, detached (SoME only: what keys are pulled to)
};

// The top-k experts of each row of `scores` (N, E), best first, ties to the lower index: the one
// selection rule of every router, identical on every rank and at every world size.
torch::Tensor stable_top_k(const torch::Tensor& scores, int64_t k);

// Loss-free balancing (Wang et al. 2024, arXiv 2408.15664): a selection bias b (E,) added to the
// scores for the top-k only, moved after every step toward balance from the global batch's load
// (E,): b_i += rate * sign(mean load - load_i). No gradient; the same update on every rank.
void update_selection_bias(torch::Tensor& bias, const torch::Tensor& load, double rate);

// What a router's after-step update may use, on every rank alike.
struct AfterStep {
  int64_t layer = 0;                         // the block index
  int64_t step = 0;                          // the optimizer step just taken
  uint64_t seed = 0;                         // train.seed: with (step, layer), seeds random choices
  const torch::Tensor* load = nullptr;       // (E,) slots routed to each expert, global batch
  parallel::Communicator* world = nullptr;   // null: one process
};

class Router {
 public:
  virtual ~Router() = default;
  // x (N, d) and the tokens' ids (N,) -> Routing. `training`: a training forward, whose routing
  // feeds this step's statistics (and the MoE balancing loss); eval and generation leave no trace.
  virtual Routing route(const torch::Tensor& x, const torch::Tensor& token_ids, bool training) = 0;
  // The auxiliary loss of the latest training forward, added to the LM loss (undefined: none).
  virtual torch::Tensor aux_loss() const { return {}; }
  // This step's statistics that must be summed over all ranks before after_step() (fp32 tensors
  // on the model's device; the model packs every layer's into one allreduce buffer).
  virtual void step_statistics(std::vector<torch::Tensor>& out) { (void)out; }
  // After every optimizer step, with the statistics summed over the global batch: the
  // gradient-free update (Knowledge Gravity, the MoE selection bias); the statistics restart.
  virtual void after_step(const AfterStep& context) = 0;
  // Mean top-1 score of this step's tokens (after the statistics were summed); 0: no scores.
  virtual double mean_top1_score() const { return 0.0; }
  // Keys that adapt while reading (docs/design.md §3): the statistics of a routing that was not a
  // training forward's (eval, generation; the rows the caller chose), then one gradient-free
  // update from what was observed, seeded like after_step() with context.step = the update's
  // index. No-ops for routers without keys.
  virtual void observe(const Routing& r) { (void)r; }
  virtual void adapt(const AfterStep& context) { (void)context; }
  // Keys (E, d) and usage (E,) from a keys file, in place; shapes are the caller's to check.
  virtual void load_keys(const torch::Tensor& keys, const torch::Tensor& usage) {
    (void)keys;
    (void)usage;
  }
  // The key store, read-only (analytics, reports, checks); null for routers without keys.
  virtual const KeyStore* key_store() const { return nullptr; }
  // Multiply-adds per token of choosing the experts, forward and backward.
  virtual double forward_flops() const = 0;
  virtual double backward_flops() const = 0;
};

}  // namespace some::model
