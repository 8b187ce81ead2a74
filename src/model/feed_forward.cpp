#include "src/model/feed_forward.h"

#include "common/errors.h"

namespace some::model {

torch::Tensor activate(const torch::Tensor& x, const std::string& activation) {
  if (activation == "gelu") return torch::gelu(x);
  if (activation == "silu") return torch::silu(x);
  if (activation == "relu") return torch::relu(x);
  throw ConfigError("expert.activation = '" + activation + "' is not one of gelu, silu, relu");
}

DenseFFN::DenseFFN(int64_t d_model, int64_t d_ff, std::string activation)
    : d_model_(d_model), d_ff_(d_ff), activation_(std::move(activation)) {
  up_ = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(d_model, d_ff).bias(false)));
  down_ = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(d_ff, d_model).bias(false)));
}

torch::Tensor DenseFFN::forward(const torch::Tensor& x, const torch::Tensor& /*token_ids*/) {
  return down_->forward(activate(up_->forward(x), activation_));
}

}  // namespace some::model
