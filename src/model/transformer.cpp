#include "src/model/transformer.h"

#include <cmath>

#include "common/check.h"
#include "common/errors.h"
#include "parallel/communicator.h"
#include "src/model/baselines.h"
#include "src/model/init.h"
#include "src/model/linear_cross_entropy.h"
#include "src/model/some_layer.h"
#include "src/model/tensor_names.h"

namespace some::model {

BlockImpl::BlockImpl(const ModelOptions& opts, int64_t layer, FfnKind kind,
                     const parallel::ParallelState* parallel) {
  attn_norm_ = register_module("attn_norm", RMSNorm(opts.d_model));
  attn_ = register_module("attn", CausalSelfAttention(opts.d_model, opts.n_heads, opts.max_seq_len));
  ffn_norm_ = register_module("ffn_norm", RMSNorm(opts.d_model));
  std::shared_ptr<FeedForward> block;
  switch (kind) {
    case FfnKind::kSome: block = std::make_shared<SoMELayer>(opts, layer, parallel); break;
    case FfnKind::kMoe: block = std::make_shared<MoELayer>(opts, layer, parallel); break;
    case FfnKind::kHash: block = std::make_shared<HashLayer>(opts, layer, parallel); break;
    case FfnKind::kDense: block = std::make_shared<DenseFFN>(opts.d_model, opts.d_ff, opts.expert.activation); break;
  }
  ffn = register_module(choice_name(kind), block);  // the module name is the option's name: layers.L.some.*
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& token_ids) {
  auto h = x + attn_->forward(attn_norm_->forward(x));                         // (B, T, d)
  auto flat = ffn_norm_->forward(h).reshape({-1, h.size(-1)});                  // (B*T, d)
  auto y = ffn->forward(flat, token_ids).view_as(h);                           // (B, T, d)
  if (collect_stats) {
    torch::NoGradGuard no_grad;
    auto sums = torch::stack({y.detach().to(torch::kFloat32).norm(2, -1).sum(), h.detach().to(torch::kFloat32).norm(2, -1).sum()});
    norms = norms.defined() && norms.device() == sums.device() ? norms.add_(sums) : sums;
  }
  return ffn_ablated ? h : h + y;
}

TransformerImpl::TransformerImpl(const ModelOptions& opts, const parallel::ParallelState* parallel) : opts_(opts) {
  tok_emb_ = register_module("tok_emb", torch::nn::Embedding(opts.vocab_size, opts.d_model));
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < opts.n_layers; ++l) {
    // routed_layers = every_other keeps dense FFNs in the even layers, for every routed kind.
    const bool routed = opts.ffn != FfnKind::kDense && (opts.routed_layers == RoutedLayers::kAll || l % 2 == 1);
    layers_->push_back(Block(opts, l, routed ? opts.ffn : FfnKind::kDense, parallel));
    if (routed) routed_layer_indices_.push_back(l);
    if (routed && opts.ffn == FfnKind::kSome) some_layer_indices_.push_back(l);
  }
  final_norm_ = register_module("final_norm", RMSNorm(opts.d_model));

  // Trainable weights from a generator seeded by model.seed (LibTorch's default generator is
  // seeded randomly per process): GPT-2 style normal(0, 0.02), residual projections scaled by
  // depth; query networks keep nn.Linear's U(+-1/sqrt(fan_in)) so queries start spread over the
  // key sphere; norms start at 1.
  torch::NoGradGuard no_grad;
  auto gen = seeded_generator(opts.seed, -1, 0, InitStream::kDense);
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(opts.n_layers));
  auto params = named_parameters();
  for (auto& p : params) {
    const auto& name = p.key();
    auto& w = p.value();
    if (names::is_expert(name)) continue;  // per expert, by ExpertShard
    if (name.ends_with(".gate_log_scale")) continue;  // log(1 / tau), by its router
    if (names::is_query_network(name)) {
      // fan_in of the Linear this tensor belongs to (a bias shares its weight's).
      const auto weight = name.ends_with(".bias") ? name.substr(0, name.size() - 4) + "weight" : name;
      const double bound = 1.0 / std::sqrt(static_cast<double>(params[weight].size(1)));
      w.copy_(torch::rand(w.sizes(), gen, torch::kFloat32) * (2 * bound) - bound);
    } else if (w.dim() >= 2) {
      bool residual = name.ends_with("attn.proj.weight") || name.ends_with("dense.down.weight") ||
                      name.ends_with("shared.down.weight");
      w.copy_(torch::randn(w.sizes(), gen, torch::kFloat32) * (residual ? residual_std : 0.02));
    } else {
      w.fill_(1.0);  // RMSNorm weights, expert output scales
    }
  }
}

torch::Tensor TransformerImpl::hidden(const torch::Tensor& tokens) {
  auto x = tok_emb_->forward(tokens);                                          // (B, T, d)
  const auto ids = tokens.reshape({-1});                                       // (B*T,)
  for (auto& layer : *layers_) x = layer->as<BlockImpl>()->forward(x, ids);
  return final_norm_->forward(x);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens) {
  return torch::matmul(hidden(tokens), tok_emb_->weight.t());                  // (B, T, V)
}

torch::Tensor TransformerImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  auto x = hidden(tokens);                                                     // (B, T, d)
  // The LM head (tied embedding) and the mean cross-entropy in one blocked op: no (B*T, V) logits.
  return linear_cross_entropy(x.reshape({-1, x.size(-1)}), tok_emb_->weight, targets.reshape({-1}));
}

std::vector<SoMELayer*> TransformerImpl::some_layers() {
  std::vector<SoMELayer*> out;
  for (auto l : some_layer_indices_) {
    out.push_back(static_cast<SoMELayer*>(layers_[l]->as<BlockImpl>()->ffn.get()));
  }
  return out;
}

std::vector<RoutedFFN*> TransformerImpl::routed_layers() {
  std::vector<RoutedFFN*> out;
  for (auto l : routed_layer_indices_) {
    out.push_back(static_cast<RoutedFFN*>(layers_[l]->as<BlockImpl>()->ffn.get()));
  }
  return out;
}

void TransformerImpl::set_collect_stats(bool on) {
  for (auto* layer : routed_layers()) layer->collect_stats = on;
  for (auto& block : *layers_) block->as<BlockImpl>()->collect_stats = on;
}

StepRouting TransformerImpl::after_step(int64_t step, uint64_t seed, parallel::Communicator& world, bool report) {
  torch::NoGradGuard no_grad;
  auto layers = routed_layers();
  std::vector<torch::Tensor> stats;  // fp32, on the model's device
  for (auto* layer : layers) layer->step_statistics(stats);
  std::vector<torch::Tensor> block_norms;  // (2,) per block: summed like the routing statistics
  for (auto& block : *layers_) {
    auto& norms = block->as<BlockImpl>()->norms;
    if (!norms.defined()) norms = torch::zeros({2}, tok_emb_->weight.options().dtype(torch::kFloat32));
    block_norms.push_back(norms);
    stats.push_back(norms);
  }
  if (!stats.empty() && world.world_size() > 1) {
    std::vector<torch::Tensor> flat;
    for (auto& t : stats) flat.push_back(t.reshape({-1}));
    auto buffer = torch::cat(flat);       // (sum of numel,) every layer's statistics
    world.allreduce_sum(buffer);          // the step's one allreduce of routing state
    int64_t offset = 0;
    for (auto& t : stats) {
      t.copy_(buffer.narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
  StepRouting out;
  if (report) {
    for (size_t l = 0; l < layers.size(); ++l) {
      auto* store = layers[l]->key_store();
      out.dropped_slots += layers[l]->dropped_slots();
      out.layers.push_back({routed_layer_indices_[l], layers[l]->load().clone(),
                            store ? store->keys().clone() : torch::Tensor(), layers[l]->router().mean_top1_score()});
    }
  }
  if (report) {
    for (auto& n : block_norms) {
      const auto sums = n.cpu();
      const double residual = sums[1].item<double>();
      out.ffn_out_ratio.push_back(residual > 0 ? sums[0].item<double>() / residual : 0.0);
    }
  }
  for (auto& n : block_norms) n.zero_();
  for (auto* layer : layers) layer->after_step(step, seed, &world);
  return out;
}

torch::Tensor TransformerImpl::aux_loss() {
  torch::Tensor total;
  for (auto* layer : routed_layers()) {
    auto aux = layer->aux_loss();
    if (aux.defined()) total = total.defined() ? total + aux : aux;
  }
  return total;
}

std::vector<torch::Tensor> TransformerImpl::decay_parameters() {
  std::vector<torch::Tensor> out;
  for (auto& p : parameters()) if (p.requires_grad() && p.dim() >= 2) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> TransformerImpl::no_decay_parameters() {
  std::vector<torch::Tensor> out;
  for (auto& p : parameters()) if (p.requires_grad() && p.dim() < 2) out.push_back(p);
  return out;
}

std::map<std::string, torch::Tensor> TransformerImpl::state_tensors() {
  std::map<std::string, torch::Tensor> named;
  for (auto& p : named_parameters()) named.emplace(p.key(), p.value());
  for (auto& b : named_buffers()) {
    // Rotary tables are recomputed from the config, not state.
    if (!names::is_recomputed(b.key())) named.emplace(b.key(), b.value());
  }
  return split_experts(named);
}

std::map<std::string, torch::Tensor> TransformerImpl::split_experts(const std::map<std::string, torch::Tensor>& by_param) {
  // Expert i of layer l is `layers.l.<ffn>.experts.i.w_down` (h, d) / `.w_up` (d, h) whichever
  // rank holds it: a view into this rank's stacked shard, so copying into it loads the shard.
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : by_param) {
    auto stacked = names::parse_stacked_experts(name);
    if (!stacked) {
      out.emplace(name, t);
      continue;
    }
    auto* routed = dynamic_cast<RoutedFFN*>(layers_[stacked->layer]->as<BlockImpl>()->ffn.get());
    SOME_REQUIRE(routed, Error, "'{}' names experts of a layer without them", name);
    const auto first = routed->experts()->first_expert;
    for (int64_t i = 0; i < t.size(0); ++i) out.emplace(fmt::format("{}{}.{}", stacked->prefix, first + i, stacked->matrix), t[i]);
  }
  return out;
}

int64_t TransformerImpl::num_parameters(bool trainable_only) {
  int64_t n = 0;
  for (auto& p : named_parameters()) {
    if (!names::is_expert(p.key())) n += p.value().numel();  // experts: all E below
  }
  const int64_t all_experts = opts_.num_experts * 2 * opts_.d_model * opts_.d_expert;
  for (auto* layer : routed_layers()) {
    if (layer->experts()->trainable()) {
      n += all_experts;
    } else if (!trainable_only) {
      n += all_experts + opts_.num_experts * opts_.d_model;  // the frozen library and its keys
    }
  }
  return n;
}

int64_t TransformerImpl::bytes_held() {
  int64_t bytes = 0;
  for (auto& p : parameters()) bytes += p.numel() * p.element_size();
  for (auto& b : buffers()) bytes += b.numel() * b.element_size();
  return bytes;
}

void TransformerImpl::ablate_ffn(int64_t layer) {
  SOME_REQUIRE(layer >= -1 && layer < opts_.n_layers, ConfigError, "--ablate-ffn {}: the model has blocks 0..{}", layer,
               opts_.n_layers - 1);
  for (int64_t l = 0; l < opts_.n_layers; ++l) layers_[l]->as<BlockImpl>()->ffn_ablated = l == layer;
}

double TransformerImpl::flops_per_token(int64_t seq_len, bool with_backward) const {
  const double d = opts_.d_model, V = opts_.vocab_size, T = static_cast<double>(seq_len);
  double fwd = 2 * d * V, bwd = 2 * fwd;                       // tied LM head
  const double attn = 2 * 4 * d * d + 4 * T * d;                 // qkv + proj, QK^T and AV
  for (auto& layer : *layers_) {
    auto* ffn = layer->as<BlockImpl>()->ffn.get();
    fwd += attn + ffn->forward_flops_per_token();
    bwd += 2 * attn + ffn->backward_flops_per_token();
  }
  return with_backward ? fwd + bwd : fwd;
}

}  // namespace some::model
