// Cutting a trained dense FFN into a narrower FFN or an expert library (src/model/ffn_units.h):
// first / magnitude / cluster against hand-computed unit groups, copies, planted clusters, balance.
#include <algorithm>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "src/model/ffn_units.h"

using namespace some::model;

namespace {
std::vector<std::vector<int64_t>> as_lists(const torch::Tensor& g) {
  std::vector<std::vector<int64_t>> out(g.size(0));
  for (int64_t i = 0; i < g.size(0); ++i) {
    for (int64_t j = 0; j < g.size(1); ++j) out[i].push_back(g[i][j].item<int64_t>());
  }
  return out;
}
}  // namespace

// Unit j of up (8, 4) has norm 2 * {1, 5, 2, 8, 3, 7, 4, 6}[j]; down's columns norm 1.
TEST(FfnUnits, FirstAndMagnitudeByHand) {
  const std::vector<double> scale = {1, 5, 2, 8, 3, 7, 4, 6};
  auto up = torch::ones({8, 4}, torch::kFloat64) * torch::tensor(scale, torch::kFloat64).unsqueeze(1);  // norm 2 s_j
  auto down = torch::zeros({4, 8}, torch::kFloat64);
  down[0] = 1;
  EXPECT_EQ(as_lists(choose_units(up, down, 2, 2, UnitChoice::kFirst, 0)),
            (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}}));
  // The 4 largest are units 3 (8), 5 (7), 7 (6), 1 (5): in index order 1, 3, 5, 7.
  EXPECT_EQ(as_lists(choose_units(up, down, 2, 2, UnitChoice::kMagnitude, 0)),
            (std::vector<std::vector<int64_t>>{{1, 3}, {5, 7}}));
  // One group (a narrower dense FFN): cluster is magnitude.
  EXPECT_EQ(as_lists(choose_units(up, down, 1, 3, UnitChoice::kCluster, 0)),
            (std::vector<std::vector<int64_t>>{{3, 5, 7}}));
  // Every unit: magnitude keeps the index order.
  EXPECT_EQ(as_lists(choose_units(up, down, 2, 4, UnitChoice::kMagnitude, 0)),
            (std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
}

TEST(FfnUnits, CopiesAndTooFewUnits) {
  auto up = torch::randn({6, 4}), down = torch::randn({4, 6});
  EXPECT_EQ(as_lists(choose_units(up, down, 3, 6, UnitChoice::kCluster, 1)),
            (std::vector<std::vector<int64_t>>(3, {0, 1, 2, 3, 4, 5})));
  EXPECT_THROW(choose_units(up, down, 4, 2, UnitChoice::kFirst, 1), some::ConfigError);
}

// Four planted directions, six units each around them, interleaved: cluster gives back exactly
// the planted groups (whatever the seed), first does not.
TEST(FfnUnits, ClusterRecoversPlantedGroups) {
  torch::manual_seed(3);
  const int64_t groups = 4, width = 6, d = 16;
  auto directions = std::get<0>(torch::linalg_qr(torch::randn({d, d}))).narrow(1, 0, groups).t();  // (4, d) orthonormal
  auto up = torch::empty({groups * width, d});
  std::vector<std::set<int64_t>> planted(groups);
  for (int64_t j = 0; j < groups * width; ++j) {
    const int64_t g = (j * 7) % groups;  // interleaved
    up[j] = directions[g] * (1 + j % 3) + 0.05 * torch::randn({d});
    planted[g].insert(j);
  }
  auto down = torch::randn({d, groups * width});
  for (uint64_t seed : {0, 1, 2}) {
    auto got = as_lists(choose_units(up, down, groups, width, UnitChoice::kCluster, seed));
    std::vector<std::set<int64_t>> sets;
    for (auto& g : got) {
      EXPECT_TRUE(std::is_sorted(g.begin(), g.end()));
      sets.emplace_back(g.begin(), g.end());
    }
    for (const auto& p : planted) EXPECT_NE(std::find(sets.begin(), sets.end(), p), sets.end()) << "seed " << seed;
    EXPECT_LT(got[0][0], got[1][0]);  // groups ordered by their first unit
  }
  EXPECT_NE(as_lists(choose_units(up, down, groups, width, UnitChoice::kFirst, 0))[0],
            as_lists(choose_units(up, down, groups, width, UnitChoice::kCluster, 0))[0]);
}

// Balanced whatever the data: 10 units near one direction and 2 near another still make two
// groups of 6, and the two outliers share a group.
TEST(FfnUnits, ClusterGroupsAreExactlyBalanced) {
  torch::manual_seed(4);
  auto a = torch::zeros({8}), b = torch::zeros({8});
  a[0] = 1;
  b[1] = 1;
  auto up = torch::empty({12, 8});
  for (int64_t j = 0; j < 12; ++j) up[j] = (j == 4 || j == 9 ? b : a) + 0.01 * torch::randn({8});
  auto g = as_lists(balanced_kmeans(up, 2, 6, 7));
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].size(), 6u);
  EXPECT_EQ(g[1].size(), 6u);
  const bool together = (std::count(g[0].begin(), g[0].end(), 4) + std::count(g[0].begin(), g[0].end(), 9)) % 2 == 0;
  EXPECT_TRUE(together) << "the two outliers were split";
  std::set<int64_t> all(g[0].begin(), g[0].end());
  all.insert(g[1].begin(), g[1].end());
  EXPECT_EQ(all.size(), 12u);
}
