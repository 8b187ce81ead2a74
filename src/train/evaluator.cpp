#include "src/train/evaluator.h"

#include <cmath>

#include "checkpoints/tensor_file.h"
#include "common/check.h"
#include "common/logging.h"
#include "src/model/key_store.h"
#include "src/model/routed_ffn.h"
#include "src/model/tensor_names.h"

namespace some::train {

Evaluator::Evaluator(data::TokenSplit split, int64_t seq_len, int64_t micro_batch, int64_t eval_batches,
                     torch::Device device, parallel::ParallelState& parallel)
    : split_(std::move(split)),
      // A val split shorter than one training window is evaluated as one shorter window.
      windows_(split_, std::max<int64_t>(1, std::min(seq_len, split_.num_tokens() - 1))),
      seq_len_(windows_.seq_len()), micro_batch_(micro_batch), device_(device), parallel_(parallel) {
  if (seq_len_ < seq_len) {
    log::get("train")->warn("val split '{}' has only {} tokens: evaluating windows of {} tokens instead of {}",
                            split_.name(), split_.num_tokens(), seq_len_, seq_len);
  }
  num_windows_ = windows_.num_windows();
  if (eval_batches > 0) num_windows_ = std::min(num_windows_, eval_batches * micro_batch);
  // Every rank runs the same number of forwards (the expert exchange is collective).
  num_windows_ -= num_windows_ % parallel_.world_size();
  // Unigram perplexity of exactly the evaluated targets: exp of the entropy of their empirical
  // distribution (the best any context-free model can do on them).
  std::map<int32_t, int64_t> freq;
  for (int64_t first = 0; first < num_windows_; first += micro_batch_) {
    auto b = batch(first, std::min(micro_batch_, num_windows_ - first)).cpu();
    auto targets = b.narrow(1, 1, seq_len_).flatten();
    auto* p = targets.data_ptr<int64_t>();
    for (int64_t i = 0; i < targets.numel(); ++i) ++freq[static_cast<int32_t>(p[i])];
  }
  double total = 0, h = 0;
  for (auto& [tok, c] : freq) total += static_cast<double>(c);
  for (auto& [tok, c] : freq) h -= (c / total) * std::log(c / total);
  unigram_ppl_ = std::exp(h);
}

torch::Tensor Evaluator::batch(int64_t first, int64_t count) const {
  std::vector<int32_t> buf(count * (seq_len_ + 1));
  windows_.fill(first, count, buf.data());
  return torch::from_blob(buf.data(), {count, seq_len_ + 1}, torch::kInt32)
      .to(torch::kInt64)
      .to(device_);
}

EvalResult Evaluator::run(model::Transformer& model, OnlineAdapter* adapter) {
  SOME_REQUIRE(!adapter || parallel_.world_size() == 1, Error,
               "adapting keys while evaluating runs in one process, not on {} ranks", parallel_.world_size());
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  model->set_collect_stats(false);  // eval forwards never feed Knowledge Gravity
  // Every routed layer: SoME's, and the baselines' (which have no keys or scores).
  auto layers = model->routed_layers();
  const auto E = model->options().num_experts;
  // Counts (and, up to kDenseCoactivationMaxExperts, the dense co-activation) per layer; above
  // that the co-activation is counted sparsely and kept as its strongest pairs (docs/design.md §3).
  const bool dense_coactivation = E <= kDenseCoactivationMaxExperts;
  std::vector<model::GravityStats> stats;
  std::vector<CoactivationPairs> pairs;
  std::vector<std::vector<torch::Tensor>> top1(layers.size());
  std::vector<double> top1_score(layers.size(), 0.0);
  for (size_t l = 0; l < layers.size(); ++l) {
    // S is not needed here: a width of 0 keeps the buffer at n (E,) and C (E, E).
    if (dense_coactivation) stats.emplace_back(E, 0, torch::TensorOptions(device_));
    pairs.emplace_back(E);
  }
  std::vector<torch::Tensor> counts(layers.size());  // (E,) selections, when C is not dense
  for (auto& c : counts) c = torch::zeros({E}, torch::TensorOptions(device_).dtype(torch::kFloat32));

  EvalResult out;
  const int64_t per_rank = num_windows_ / parallel_.world_size();
  const int64_t begin = parallel_.rank() * per_rank, end = begin + per_rank;
  auto sums = torch::zeros({2 + static_cast<int64_t>(layers.size())}, torch::kFloat64);  // loss, tokens, top-1 scores
  for (int64_t first = begin; first < end; first += micro_batch_) {
    const auto count = std::min(micro_batch_, end - first);
    auto b = batch(first, count);                                            // (B, T+1)
    auto loss = model->loss(b.narrow(1, 0, seq_len_), b.narrow(1, 1, seq_len_));
    const auto n = count * seq_len_;
    sums[0] += loss.item<double>() * static_cast<double>(n);
    sums[1] += static_cast<double>(n);
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& r = layers[l]->last_routing();  // the baselines have no queries: counts and co-activation only
      if (layers[l]->key_store()) sums[2 + l] += r.scores.select(1, 0).sum().item<double>();
      if (dense_coactivation) {
        stats[l].add(model::Routing{r.indices, {}, {}, {}});  // n and C only
      } else {
        auto flat = r.indices.reshape({-1});
        counts[l].index_add_(0, flat, torch::ones({flat.size(0)}, counts[l].options()));
        pairs[l].add(r.indices);
      }
      top1[l].push_back(r.indices.select(1, 0).cpu());
    }
    if (adapter) adapter->read();  // after scoring: this micro-batch moves only the keys of later ones
  }
  if (adapter) adapter->flush();
  parallel_.world().allreduce_sum(sums);
  for (auto& s : stats) parallel_.world().allreduce_sum(s.flat());
  if (!dense_coactivation) {
    for (auto& c : counts) parallel_.world().allreduce_sum(c);
  }
  out.tokens = static_cast<int64_t>(sums[1].item<double>());
  out.loss = sums[0].item<double>() / std::max(sums[1].item<double>(), 1.0);
  out.ppl = std::exp(out.loss);
  for (size_t l = 0; l < layers.size(); ++l) top1_score[l] = sums[2 + l].item<double>();

  const auto indices = model->routed_layer_indices();
  for (size_t l = 0; l < layers.size(); ++l) {
    LayerEvalStats s{dense_coactivation ? stats[l].n().cpu().clone() : counts[l].cpu(),
                     dense_coactivation ? stats[l].C().cpu().clone() : torch::Tensor(),
                     dense_coactivation ? torch::Tensor() : pairs[l].strongest(16 * E, parallel_.world()),
                     top1[l].empty() ? torch::empty({0}, torch::kLong) : torch::cat(top1[l])};
    auto summary = summarize_routing(indices[l], s.counts, layers[l]->key_store() ? layers[l]->key_store()->keys() : torch::Tensor(),
                                     top1_score[l] / static_cast<double>(std::max<int64_t>(out.tokens, 1)));
    if (previous_top1_.size() == layers.size()) {
      // This rank's tokens changed / evaluated, summed over ranks.
      auto changed = torch::tensor({(s.top1 != previous_top1_[l]).sum().item<double>(),
                                    static_cast<double>(s.top1.numel())}, torch::kFloat64);
      parallel_.world().allreduce_sum(changed);
      summary.churn = changed[0].item<double>() / std::max(changed[1].item<double>(), 1.0);
    }
    out.routing.push_back(summary);
    out.layers.push_back(std::move(s));
  }
  previous_top1_.clear();
  for (auto& s : out.layers) previous_top1_.push_back(s.top1);
  if (was_training) model->train();
  return out;
}

void Evaluator::write_analytics(const std::string& path, model::Transformer& model,
                                const EvalResult& result) {
  checkpoints::TensorMap tensors;
  auto layers = model->routed_layers();
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto name = [&](std::string_view what) { return model::names::analytics(result.routing[l].layer, what); };
    if (const auto* store = layers[l]->key_store()) {  // SoME layers; the baselines have no keys
      tensors[name("keys")] = store->keys();
      tensors[name("usage")] = store->usage();
    }
    tensors[name("counts")] = result.layers[l].counts;
    if (result.layers[l].coactivation.defined()) {
      tensors[name("coactivation")] = result.layers[l].coactivation;
    } else {
      tensors[name("coactivation_pairs")] = result.layers[l].coactivation_pairs;
    }
  }
  checkpoints::write_tensors(path, tensors);
}

}  // namespace some::train
