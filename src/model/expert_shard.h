#pragma once
// The experts one rank holds for one routed layer, computed grouped: tokens arrive sorted by
// expert and each expert with tokens runs one GEMM pair on its contiguous slice. The SoME
// library's experts are frozen buffers; the MoE / hash baselines' experts are parameters.
//
// Legend: E_local experts here, h = d_expert, d model width, M routed slots.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "src/model/feed_forward.h"
#include "src/model/options.h"

namespace some::model {

class ExpertShardImpl : public torch::nn::Module {
 public:
  enum class Kind {
    kFrozen,     // buffers initialised by expert.init (the library)
    kTrainable,  // parameters initialised like the dense FFN: N(0, 0.02) in, depth-scaled out
  };
  // Experts [first, first + count) of layer `layer`, each initialised from its own seed (never
  // from how the experts are sharded). `n_layers` scales the trainable output projection.
  ExpertShardImpl(int64_t layer, int64_t first, int64_t count, int64_t d_model, int64_t d_expert,
                  const ExpertOptions& opts, uint64_t seed, Kind kind = Kind::kFrozen, int64_t n_layers = 1);

  // x (M, d) sorted by expert, counts (E_local,) -> (M, d). Gradients flow to x (and to the
  // weights of trainable experts).
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& counts);
  // The yardstick: every slot computed on its own, one small GEMM pair per slot.
  torch::Tensor forward_naive(const torch::Tensor& x, const torch::Tensor& expert_of);

  bool trainable() const { return kind_ == Kind::kTrainable; }

  torch::Tensor w_down;  // (E_local, h, d)
  torch::Tensor w_up;    // (E_local, d, h)
  int64_t first_expert;

 private:
  Activation activation_;
  Kind kind_;
};
TORCH_MODULE(ExpertShard);

}  // namespace some::model
