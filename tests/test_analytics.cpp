// Routing analytics on distributions with known answers (docs/design.md §9).
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "src/train/lr_schedule.h"
#include "src/train/routing_analytics.h"

using namespace some::train;

TEST(Analytics, GiniOfKnownDistributions) {
  EXPECT_NEAR(gini(torch::full({8}, 5.0)), 0.0, 1e-12);
  EXPECT_NEAR(gini(torch::tensor({0., 0., 0., 9.})), 0.75, 1e-12);        // (n-1)/n
  EXPECT_NEAR(gini(torch::tensor({4., 1., 3., 2.})), 0.25, 1e-12);        // sum (2i-n-1) x_i / (n sum x)
}

TEST(Analytics, EntropyOfKnownDistributions) {
  EXPECT_NEAR(entropy_nats(torch::full({8}, 3.0)), std::log(8.0), 1e-12);
  EXPECT_NEAR(entropy_nats(torch::tensor({0., 7., 0.})), 0.0, 1e-12);
  EXPECT_NEAR(entropy_nats(torch::tensor({1., 1., 2.})), -(0.5 * std::log(0.25) + 0.5 * std::log(0.5)), 1e-12);
}

TEST(Analytics, SummaryCountsDeadExpertsAndKeyGeometry) {
  auto keys = torch::tensor({1.f, 0.f, 2.f, 0.f, 0.f, 3.f}).view({3, 2});
  auto r = summarize_routing(4, torch::tensor({5.f, 0.f, 5.f}), keys, 0.7);
  EXPECT_EQ(r.layer, 4);
  EXPECT_EQ(r.dead_experts, 1);
  EXPECT_NEAR(r.entropy_norm, std::log(2.0) / std::log(3.0), 1e-9);
  EXPECT_NEAR(r.key_norm, 2.0, 1e-6);
  EXPECT_NEAR(r.key_cos, (1.0 + 0 + 0) * 2 / 6, 1e-6);  // pairs (0,1) cos 1, others 0
  EXPECT_DOUBLE_EQ(r.top1_score, 0.7);
}

TEST(Schedule, WarmupThenCosineToFloor) {
  EXPECT_DOUBLE_EQ(learning_rate(5, 10, 110, 1.0, 0.1), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(10, 10, 110, 1.0, 0.1), 1.0);
  EXPECT_NEAR(learning_rate(60, 10, 110, 1.0, 0.1), 0.55, 1e-12);  // half-way: floor + half the span
  EXPECT_NEAR(learning_rate(110, 10, 110, 1.0, 0.1), 0.1, 1e-12);
}
