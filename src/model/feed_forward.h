#pragma once
// The feed-forward block of a transformer layer, behind one interface: DenseFFN, and the routed
// blocks (routed_ffn.h): SoMELayer and the MoE / hash baselines. Input and output (N, d):
// tokens flattened; token_ids (N,) are the input ids of those tokens (the hash router's key).
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "src/model/options.h"

namespace some::model {

class FeedForward : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids = {}) = 0;  // (N, d) -> (N, d)
  // Multiply-adds per token of forward, and of backward (frozen weights need no weight grad).
  virtual double forward_flops_per_token() const = 0;
  virtual double backward_flops_per_token() const = 0;
};

// expert.activation, parsed once when a layer is built (not at every forward).
torch::Tensor activate(const torch::Tensor& x, Activation activation);

class DenseFFN final : public FeedForward {
 public:
  DenseFFN(int64_t d_model, int64_t d_ff, Activation activation);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids = {}) override;
  double forward_flops_per_token() const override { return 2.0 * 2 * d_model_ * d_ff_; }
  double backward_flops_per_token() const override { return 2 * forward_flops_per_token(); }

 private:
  int64_t d_model_, d_ff_;
  Activation activation_;
  torch::nn::Linear up_{nullptr}, down_{nullptr};
};

}  // namespace some::model
