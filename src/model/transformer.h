#pragma once
// Decoder-only SoME transformer (docs/design.md §4): tied embeddings, pre-norm blocks
// x += Attn(RMSNorm(x)); x += FFN(RMSNorm(x)), final RMSNorm.
//
// Legend: B batch, T sequence length, d model width, V vocabulary, L layers.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "src/model/attention.h"
#include "src/model/feed_forward.h"
#include "src/model/options.h"

namespace some::parallel {
class Communicator;
class ParallelState;
}

namespace some::model {

class RoutedFFN;
class SoMELayer;

// One routed layer's routing over an optimizer step's global batch, read before the after-step
// update (the training log line).
struct LayerStepRouting {
  int64_t layer = 0;
  torch::Tensor counts;          // (E,) slots routed to each expert
  torch::Tensor keys;            // (E, d) before Knowledge Gravity moved them; undefined: no keys
  double mean_top1_score = 0.0;  // 0: a router without scores
};
struct StepRouting {
  int64_t dropped_slots = 0;     // over all layers and ranks (model.capacity_factor > 0)
  std::vector<LayerStepRouting> layers;
  // Per block (every block, routed or dense): sum over the step's tokens of ||FFN output|| over
  // the sum of ||residual stream entering the FFN||, the FFN's relative contribution.
  std::vector<double> ffn_out_ratio;
};

class BlockImpl : public torch::nn::Module {
 public:
  // `ffn`: some | dense | moe | hash (docs/design.md §10); also the FFN's module name.
  BlockImpl(const ModelOptions& opts, int64_t layer, FfnKind ffn, const parallel::ParallelState* parallel);
  // x (B, T, d), token_ids (B*T,) -> (B, T, d)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids);
  std::shared_ptr<FeedForward> ffn;
  // Training forwards add (sum ||FFN output||, sum ||residual||) over their tokens to `norms`
  // (2,) fp32 (StepRouting::ffn_out_ratio); eval and generation forwards must not.
  bool collect_stats = false;
  torch::Tensor norms;
  // The FFN's output left out of the residual stream (an ablation at eval: how much this block's
  // FFN contributes). The FFN still runs, so routed layers stay collective over their ranks.
  bool ffn_ablated = false;

 private:
  RMSNorm attn_norm_{nullptr}, ffn_norm_{nullptr};
  CausalSelfAttention attn_{nullptr};
};
TORCH_MODULE(Block);

class TransformerImpl : public torch::nn::Module {
 public:
  // `parallel` (null: one process) shards the experts of every SoME layer over the EP group.
  explicit TransformerImpl(const ModelOptions& opts, const parallel::ParallelState* parallel = nullptr);

  torch::Tensor hidden(const torch::Tensor& tokens);   // (B, T) int64 -> final-norm output (B, T, d)
  torch::Tensor forward(const torch::Tensor& tokens);  // (B, T) int64 -> logits (B, T, V)
  // Mean next-token cross-entropy, fp32; never forms the (B*T, V) logits (linear_cross_entropy.h).
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets);

  const ModelOptions& options() const { return opts_; }
  // Ablates the FFN of block `layer` (BlockImpl::ffn_ablated); -1: none. ConfigError outside the blocks.
  void ablate_ffn(int64_t layer);
  // The SoME layers in depth order (index into layers for `layer_index`).
  std::vector<SoMELayer*> some_layers();
  std::vector<int64_t> some_layer_indices() const { return some_layer_indices_; }
  // Every routed FFN (SoME, MoE, hash) in depth order, and its layer index.
  std::vector<RoutedFFN*> routed_layers();
  std::vector<int64_t> routed_layer_indices() const { return routed_layer_indices_; }
  void set_collect_stats(bool on);
  // After every optimizer step, on every rank (docs/design.md §3, §5): the step's statistics of
  // every routed layer (loads, dropped slots, the routers' own: SoME's n, S, C) packed into one
  // buffer and summed over `world` by ONE allreduce; then each router updates itself (Knowledge
  // Gravity, the MoE selection bias) and the statistics restart. `seed` (train.seed) and `step`
  // seed the dead-key restart. With `report`, returns the step's routing read in between (it
  // synchronises with the device); otherwise an empty StepRouting.
  StepRouting after_step(int64_t step, uint64_t seed, parallel::Communicator& world, bool report);
  // Sum of the auxiliary losses of the latest training forward (MoE balancing); undefined: none.
  torch::Tensor aux_loss();

  // Parameters the optimizer trains, split by whether weight decay applies (matrices only).
  std::vector<torch::Tensor> decay_parameters();
  std::vector<torch::Tensor> no_decay_parameters();
  // Every tensor that defines the model and this rank holds, by its global name
  // (`layers.3.some.keys`, `layers.3.some.experts.17.w_down`): the replicated tensors and this
  // rank's experts, one (h, d) / (d, h) view per expert.
  std::map<std::string, torch::Tensor> state_tensors();
  // The same per-expert split for any tensor shaped like a parameter of the model (its AdamW
  // moments): `by_param` maps parameter names to such tensors; stacked expert tensors come
  // back as one view per expert under the expert's global name.
  std::map<std::string, torch::Tensor> split_experts(const std::map<std::string, torch::Tensor>& by_param);

  // Parameters of the whole model (all experts, every rank's share), or trainable ones only.
  int64_t num_parameters(bool trainable_only);
  // Bytes of parameters and buffers this process holds (its share of the experts).
  int64_t bytes_held();
  double flops_per_token(int64_t seq_len, bool with_backward) const;

 private:
  ModelOptions opts_;
  torch::nn::Embedding tok_emb_{nullptr};
  torch::nn::ModuleList layers_{nullptr};
  RMSNorm final_norm_{nullptr};
  std::vector<int64_t> some_layer_indices_, routed_layer_indices_;
};
TORCH_MODULE(Transformer);

}  // namespace some::model
