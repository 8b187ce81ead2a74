#pragma once
// Pre-norm building blocks: RMSNorm and causal multi-head self-attention with rotary positions
// through at::scaled_dot_product_attention.
//
// Legend: B batch, T sequence length, d model width, H heads, D = d / H head width.
#include <cstdint>

#include <torch/torch.h>

namespace some::model {

class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t d, double eps = 1e-6);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;  // (d,)

 private:
  int64_t d_;
  double eps_;
};
TORCH_MODULE(RMSNorm);

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int64_t d_model, int64_t n_heads, int64_t max_seq_len);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, d) -> (B, T, d)

 private:
  int64_t n_heads_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
  torch::Tensor cos_, sin_;  // (max_T, D/2) rotary tables
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace some::model
