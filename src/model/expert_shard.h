#pragma once
// The frozen experts one rank holds for one SoME layer, computed grouped: tokens arrive sorted
// by expert and each expert with tokens runs one GEMM pair on its contiguous slice.
//
// Legend: E_local experts here, h = d_expert, d model width, M routed slots.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "src/model/options.h"

namespace some::model {

class ExpertShardImpl : public torch::nn::Module {
 public:
  // Experts [first, first + count) of layer `layer`, each initialised from its own seed.
  ExpertShardImpl(int64_t layer, int64_t first, int64_t count, int64_t d_model, int64_t d_expert,
                  const ExpertOptions& opts, uint64_t seed);

  // x (M, d) sorted by expert, counts (E_local,) -> (M, d). Gradients flow to x only.
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& counts);
  // The yardstick: every slot computed on its own, one small GEMM pair per slot.
  torch::Tensor forward_naive(const torch::Tensor& x, const torch::Tensor& expert_of);

  torch::Tensor w_down;  // (E_local, h, d) frozen buffer
  torch::Tensor w_up;    // (E_local, d, h) frozen buffer
  int64_t first_expert;

 private:
  std::string activation_;
};
TORCH_MODULE(ExpertShard);

}  // namespace some::model
