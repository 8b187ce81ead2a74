#pragma once
// The SoME router (docs/design.md §1, §3): a trainable query network Q, then the key store —
// cosine scores of Q(x) against one plastic key per expert, the top-k, a softmax over the
// selected scores. Training forwards accumulate the Knowledge Gravity statistics; after every
// optimizer step the keys move by Knowledge Gravity, without gradients.
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "src/model/key_store.h"
#include "src/model/options.h"
#include "src/model/router.h"

namespace some::model {

class KeyStoreRouter final : public Router {
 public:
  // Registers `query` (the query network) and the buffers `keys` (E, d) and `usage` (E,) on
  // `owner`, the layer, so that they are saved, loaded and moved with it under its name.
  KeyStoreRouter(const ModelOptions& opts, int64_t layer, torch::nn::Module& owner);

  Routing route(const torch::Tensor& x, const torch::Tensor& token_ids, bool training) override;
  void step_statistics(std::vector<torch::Tensor>& out) override;  // n, S, C and the top-1 score sum
  void after_step(const AfterStep& context) override;             // Knowledge Gravity
  double mean_top1_score() const override { return key_store_->mean_top1_score(); }
  void observe(const Routing& r) override { key_store_->accumulate(r); }
  void adapt(const AfterStep& context) override;                   // Knowledge Gravity, never the k-means init
  void load_keys(const torch::Tensor& keys, const torch::Tensor& usage) override;
  const KeyStore* key_store() const override { return key_store_.get(); }
  KeyStore& store() { return *key_store_; }  // the SoME layer's own, mutable (its tests drive it)
  double forward_flops() const override;
  double backward_flops() const override;

  torch::Tensor query(const torch::Tensor& x) { return query_->forward(x); }  // Q(x): (N, d) -> (N, d)

 private:
  double query_flops() const;
  // The one seed of a key update (after_step, adapt): hash(train.seed, step, layer).
  static uint64_t update_seed(const AfterStep& c);

  int64_t d_model_, num_experts_, query_hidden_;  // query_hidden_ 0: a linear query network
  torch::nn::Sequential query_{nullptr};
  std::unique_ptr<KeyStore> key_store_;
  torch::Tensor selection_bias_;  // (E,) router.balance = bias; undefined otherwise
  double bias_rate_ = 0;
  bool key_init_from_data_ = false;  // router.key_init = data
};

}  // namespace some::model
