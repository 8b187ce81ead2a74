#pragma once
// Validation: loss and perplexity over a fixed set of windows of the val split, the unigram
// perplexity of the same tokens (the floor any model must beat), and routing analytics.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/batch_sampler.h"
#include "data/dataset.h"
#include "parallel/parallel_state.h"
#include "src/model/transformer.h"
#include "src/train/adapt.h"
#include "src/train/routing_analytics.h"

namespace some::train {

struct LayerEvalStats {
  torch::Tensor counts;        // (E,) selections
  torch::Tensor coactivation;  // (E, E) up to kDenseCoactivationMaxExperts, else undefined and ...
  torch::Tensor coactivation_pairs;  // ... (M, 3) rows (i, j, count), i < j, the strongest pairs
  torch::Tensor top1;          // (N,) top-1 expert of every evaluated token
};

struct EvalResult {
  double loss = 0, ppl = 0;
  int64_t tokens = 0;
  std::vector<LayerRouting> routing;     // one per routed layer (SoME, MoE, hash)
  std::vector<LayerEvalStats> layers;    // raw statistics behind `routing`
};

class Evaluator {
 public:
  // eval_batches micro-batches of `micro_batch` windows (0 = every window of the split). Under W
  // ranks each evaluates an equal contiguous share of the windows and the results are summed.
  Evaluator(data::TokenSplit split, int64_t seq_len, int64_t micro_batch, int64_t eval_batches,
            torch::Device device, parallel::ParallelState& parallel);

  // With `adapter` (keys that adapt while reading, adapt.h; one process only): the windows are
  // read in order, each micro-batch scored with the keys as adapted by the micro-batches before
  // it, then read by the adapter; what is read after its last update makes one more at the end.
  EvalResult run(model::Transformer& model, OnlineAdapter* adapter = nullptr);
  double unigram_ppl() const { return unigram_ppl_; }
  int64_t num_windows() const { return num_windows_; }
  // keys, usage, co-activation and counts per layer -> `path` (docs/design.md §9).
  static void write_analytics(const std::string& path, model::Transformer& model,
                              const EvalResult& result);

 private:
  data::TokenSplit split_;     // owned: windows_ reads through it
  data::EvalWindows windows_;
  int64_t seq_len_, micro_batch_, num_windows_;
  torch::Device device_;
  parallel::ParallelState& parallel_;
  double unigram_ppl_ = 0;
  std::vector<torch::Tensor> previous_top1_;
  torch::Tensor batch(int64_t first, int64_t count) const;  // (count, T+1) int64 on device
};

}  // namespace some::train
