#include "src/model/feed_forward.h"

#include "common/errors.h"

namespace some::model {

Activation parse_activation(const std::string& name) {
  if (name == "gelu") return Activation::kGelu;
  if (name == "silu") return Activation::kSilu;
  if (name == "relu") return Activation::kRelu;
  throw ConfigError("expert.activation = '" + name + "' is not one of gelu, silu, relu");
}

torch::Tensor activate(const torch::Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::kGelu: return torch::gelu(x);
    case Activation::kSilu: return torch::silu(x);
    case Activation::kRelu: return torch::relu(x);
  }
  return x;  // unreachable: every enumerator is handled above
}

DenseFFN::DenseFFN(int64_t d_model, int64_t d_ff, const std::string& activation)
    : d_model_(d_model), d_ff_(d_ff), activation_(parse_activation(activation)) {
  up_ = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(d_model, d_ff).bias(false)));
  down_ = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(d_ff, d_model).bias(false)));
}

torch::Tensor DenseFFN::forward(const torch::Tensor& x, const torch::Tensor& /*token_ids*/) {
  return down_->forward(activate(up_->forward(x), activation_));
}

}  // namespace some::model
