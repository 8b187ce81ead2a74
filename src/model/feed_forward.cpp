#include "src/model/feed_forward.h"

namespace some::model {

torch::Tensor activate(const torch::Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::kGelu: return torch::gelu(x);
    case Activation::kSilu: return torch::silu(x);
    case Activation::kRelu: return torch::relu(x);
  }
  return x;  // unreachable: every enumerator is handled above
}

DenseFFN::DenseFFN(int64_t d_model, int64_t d_ff, Activation activation)
    : d_model_(d_model), d_ff_(d_ff), activation_(activation) {
  up_ = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(d_model, d_ff).bias(false)));
  down_ = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(d_ff, d_model).bias(false)));
}

torch::Tensor DenseFFN::forward(const torch::Tensor& x, const torch::Tensor& /*token_ids*/) {
  return down_->forward(activate(up_->forward(x), activation_));
}

}  // namespace some::model
