// Routing analytics on distributions with known answers (docs/design.md §9).
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "parallel/parallel_state.h"
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

TEST(Analytics, CoactivationPairsEqualTheDenseCounts) {
  // Hand-computed: tokens {0,1}, {1,0}, {2,1}, {0,3} -> pairs (0,1) x2, (1,2) x1, (0,3) x1, sorted by
  // count, ties by (i, j): (0,1,2), (0,3,1), (1,2,1).
  auto comm = some::parallel::ParallelState::single_process();
  CoactivationPairs small(4);
  small.add(torch::tensor({0, 1, 1, 0, 2, 1, 0, 3}, torch::kLong).view({4, 2}));
  auto expected = torch::tensor({0, 1, 2, 0, 3, 1, 1, 2, 1}, torch::kLong).view({3, 3});
  auto got = small.strongest(10, comm.world());
  EXPECT_TRUE(torch::equal(got, expected)) << got;
  EXPECT_TRUE(torch::equal(small.strongest(2, comm.world()), expected.narrow(0, 0, 2)));

  // Random top-3 routing in several batches against a dense count C (the upper triangle).
  torch::manual_seed(5);
  const int64_t E = 50, k = 3;
  CoactivationPairs pairs(E);
  auto C = torch::zeros({E, E}, torch::kLong);
  for (int batch = 0; batch < 4; ++batch) {
    auto idx = std::get<1>(torch::randn({200, E}).topk(k, 1));
    pairs.add(idx);
    for (int64_t t = 0; t < idx.size(0); ++t)
      for (int64_t a = 0; a < k; ++a)
        for (int64_t b = 0; b < k; ++b)
          if (idx[t][a].item<int64_t>() < idx[t][b].item<int64_t>()) C[idx[t][a]][idx[t][b]] += 1;
  }
  auto all = pairs.strongest(E * E, comm.world());
  EXPECT_EQ(all.size(0), (C > 0).sum().item<int64_t>());
  auto rebuilt = torch::zeros({E, E}, torch::kLong);
  rebuilt.index_put_({all.select(1, 0), all.select(1, 1)}, all.select(1, 2));
  EXPECT_TRUE(torch::equal(rebuilt, C));
  auto counts = all.select(1, 2);
  EXPECT_TRUE((counts.narrow(0, 0, counts.size(0) - 1) >= counts.narrow(0, 1, counts.size(0) - 1)).all().item<bool>());
  EXPECT_EQ(pairs.strongest(7, comm.world()).size(0), 7);
}

TEST(Analytics, MeanPairwiseCosineMatchesTheFullMatrix) {
  torch::manual_seed(9);
  auto keys = torch::randn({40, 6}) + 0.5;  // a shared offset: a clearly positive mean cosine
  keys[3].zero_();                           // a zero key has cosine 0 with every other
  auto kn = torch::nn::functional::normalize(keys.to(torch::kFloat64), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto cos = torch::matmul(kn, kn.t());
  const double expected = (cos.sum().item<double>() - cos.diagonal().sum().item<double>()) / (40.0 * 39.0);
  EXPECT_GT(expected, 0.1);
  EXPECT_NEAR(mean_pairwise_cosine(keys), expected, 1e-12);
}
