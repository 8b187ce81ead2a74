#include "src/model/attention.h"

#include "common/check.h"
#include "common/errors.h"

namespace some::model {

RMSNormImpl::RMSNormImpl(int64_t d, double eps) : d_(d), eps_(eps) {
  weight = register_parameter("weight", torch::ones({d}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  return at::rms_norm(x, {d_}, weight, eps_);
}

namespace {
// Rotates pairs (x_i, x_{i + D/2}) by position-dependent angles. x (..., T, D), cos/sin (T, D/2).
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const auto half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto c = cos.to(x.scalar_type()), s = sin.to(x.scalar_type());
  return torch::cat({x1 * c - x2 * s, x1 * s + x2 * c}, -1);
}
}  // namespace

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t d_model, int64_t n_heads, int64_t max_seq_len)
    : n_heads_(n_heads) {
  SOME_REQUIRE(d_model % n_heads == 0 && (d_model / n_heads) % 2 == 0, ConfigError,
               "model.d_model = {} must be divisible by model.n_heads = {} into an even head width",
               d_model, n_heads);
  qkv_ = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(d_model, 3 * d_model).bias(false)));
  proj_ = register_module("proj", torch::nn::Linear(torch::nn::LinearOptions(d_model, d_model).bias(false)));
  const auto head = d_model / n_heads;
  auto inv_freq = 1.0 / torch::pow(10000.0, torch::arange(0, head, 2, torch::kFloat64) / head);
  auto angles = torch::outer(torch::arange(max_seq_len, torch::kFloat64), inv_freq);  // (T, D/2)
  cos_ = register_buffer("rope_cos", angles.cos().to(torch::kFloat32));
  sin_ = register_buffer("rope_sin", angles.sin().to(torch::kFloat32));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const auto B = x.size(0), T = x.size(1), d = x.size(2), D = d / n_heads_;
  SOME_REQUIRE(T <= cos_.size(0), Error, "sequence of {} tokens exceeds the rotary table ({})", T,
               cos_.size(0));
  auto qkv = qkv_->forward(x).view({B, T, 3, n_heads_, D}).permute({2, 0, 3, 1, 4});  // (3, B, H, T, D)
  // q and k rotated together. Split and unbind rather than indexing: an index's backward
  // zero-fills a whole (3, B, H, T, D) gradient, theirs concatenate.
  auto qk_v = qkv.split_with_sizes({2, 1}, 0);
  auto qk = apply_rotary(qk_v[0], cos_.narrow(0, 0, T), sin_.narrow(0, 0, T)).unbind(0);    // 2 x (B, H, T, D)
  auto y = at::scaled_dot_product_attention(qk[0], qk[1], qk_v[1].squeeze(0), {}, 0.0, /*is_causal=*/true);
  return proj_->forward(y.transpose(1, 2).reshape({B, T, d}));
}

}  // namespace some::model
