// The blocked LM head + cross-entropy (src/model/linear_cross_entropy.h): a hand-computed case,
// the unfused ops (matmul, cross_entropy, autograd) in fp32 and under bf16 autocast, blocks that
// do not divide the rows, logits far apart, and the no-grad path. The independent PyTorch check
// is tests/reference/loss_reference.py (exported by test_reference_export).
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include "src/model/linear_cross_entropy.h"

using some::model::linear_cross_entropy;

namespace {

struct Unfused {
  torch::Tensor loss, grad_hidden, grad_weight;
};

Unfused unfused(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets) {
  auto h = hidden.detach().clone().requires_grad_(true), w = weight.detach().clone().requires_grad_(true);
  auto loss = torch::nn::functional::cross_entropy(torch::matmul(h, w.t()).to(torch::kFloat32), targets);
  loss.backward();
  return {loss.detach(), h.grad(), w.grad()};
}

Unfused fused(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
              int64_t block_rows) {
  auto h = hidden.detach().clone().requires_grad_(true), w = weight.detach().clone().requires_grad_(true);
  auto loss = linear_cross_entropy(h, w, targets, block_rows);
  loss.backward();
  return {loss.detach(), h.grad(), w.grad()};
}

}  // namespace

// hidden [1], weight [[0], [ln 3]]: logits [0, ln 3], softmax [1/4, 3/4]. Target 0: loss ln 4,
// d/dhidden = sum_v (p_v - y_v) w_v = 3/4 ln 3, d/dweight = (p - y) h = [-3/4, 3/4].
TEST(LinearCrossEntropy, HandComputedCase) {
  auto hidden = torch::ones({1, 1});
  auto weight = torch::tensor({0.0, std::log(3.0)}, torch::kFloat32).reshape({2, 1});
  auto r = fused(hidden, weight, torch::tensor({int64_t{0}}), 1);
  EXPECT_NEAR(r.loss.item<float>(), std::log(4.0), 1e-6);
  EXPECT_NEAR(r.grad_hidden.item<float>(), 0.75 * std::log(3.0), 1e-6);
  EXPECT_NEAR(r.grad_weight[0].item<float>(), -0.75, 1e-6);
  EXPECT_NEAR(r.grad_weight[1].item<float>(), 0.75, 1e-6);
  // Scaled by the incoming gradient: d(2 L) is twice dL.
  auto h = hidden.clone().requires_grad_(true);
  (2 * linear_cross_entropy(h, weight, torch::tensor({int64_t{0}}), 1)).backward();
  EXPECT_NEAR(h.grad().item<float>(), 1.5 * std::log(3.0), 1e-6);
}

TEST(LinearCrossEntropy, EqualsTheUnfusedOpsForAnyBlockSize) {
  torch::manual_seed(3);
  auto hidden = torch::randn({37, 16}), weight = 0.5 * torch::randn({101, 16});
  auto targets = torch::randint(0, 101, {37}, torch::kInt64);
  const auto want = unfused(hidden, weight, targets);
  for (int64_t rows : {1, 5, 36, 37, 1000, 0}) {  // 0: the default block
    SCOPED_TRACE("block_rows " + std::to_string(rows));
    const auto got = fused(hidden, weight, targets, rows);
    EXPECT_NEAR(got.loss.item<float>(), want.loss.item<float>(), 1e-5);
    EXPECT_TRUE(torch::allclose(got.grad_hidden, want.grad_hidden, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(got.grad_weight, want.grad_weight, 1e-5, 1e-6));
  }
}

// Logits 300 apart: the exponentials of the small ones underflow to 0 and the loss of a row
// whose target is the small logit is ~300, finite, as the unfused log-softmax gives.
TEST(LinearCrossEntropy, LogitsFarApartStayFinite) {
  auto hidden = torch::tensor({{1.0f}, {1.0f}});
  auto weight = torch::tensor({{0.0f}, {300.0f}, {-5.0f}});
  auto targets = torch::tensor({int64_t{0}, int64_t{1}});
  const auto want = unfused(hidden, weight, targets);
  const auto got = fused(hidden, weight, targets, 1);
  ASSERT_TRUE(std::isfinite(got.loss.item<float>()));
  EXPECT_NEAR(got.loss.item<float>(), 150.0, 1e-3);  // (300 + 0) / 2
  EXPECT_NEAR(got.loss.item<float>(), want.loss.item<float>(), 1e-4);
  EXPECT_TRUE(torch::allclose(got.grad_weight, want.grad_weight, 1e-5, 1e-6));
}

TEST(LinearCrossEntropy, WithoutGradientsTheLossIsTheSame) {
  torch::manual_seed(4);
  auto hidden = torch::randn({20, 8}), weight = torch::randn({50, 8});
  auto targets = torch::randint(0, 50, {20}, torch::kInt64);
  const auto with_grad = fused(hidden, weight, targets, 6).loss;
  torch::NoGradGuard no_grad;
  auto no_grad_loss = linear_cross_entropy(hidden, weight, targets, 6);
  EXPECT_FALSE(no_grad_loss.requires_grad());
  EXPECT_NEAR(no_grad_loss.item<float>(), with_grad.item<float>(), 1e-6);
}

// Under bf16 autocast both compute bf16 logits and an fp32 softmax; the gradients leave the GEMMs
// in bf16 (the unfused one once per micro-batch, the blocked one once per block), so they agree
// to bf16 precision, and the loss to fp32 precision of the same bf16 logits.
TEST(LinearCrossEntropy, UnderBf16AutocastMatchesTheUnfusedOps) {
  torch::manual_seed(5);
  auto hidden = torch::randn({64, 32}), weight = 0.3 * torch::randn({200, 32});
  auto targets = torch::randint(0, 200, {64}, torch::kInt64);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  const auto want = unfused(hidden, weight, targets);
  const auto got = fused(hidden, weight, targets, 7);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();
  EXPECT_EQ(got.loss.scalar_type(), torch::kFloat32);
  EXPECT_NEAR(got.loss.item<float>(), want.loss.item<float>(), 1e-5);
  EXPECT_EQ(got.grad_hidden.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(got.grad_hidden, want.grad_hidden, 2e-2, 1e-4));
  EXPECT_TRUE(torch::allclose(got.grad_weight, want.grad_weight, 2e-2, 1e-4));
}

TEST(LinearCrossEntropy, MismatchedShapesAreNamed) {
  try {
    linear_cross_entropy(torch::randn({4, 8}), torch::randn({10, 6}), torch::zeros({4}, torch::kInt64));
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden [4, 8], weight [10, 6]"), std::string::npos) << e.what();
  }
}
