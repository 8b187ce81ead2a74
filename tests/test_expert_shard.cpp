// The expert shard (docs/design.md §1, src/model/expert_shard.h): the grouped kernel against the
// per-expert loop and the per-token yardstick, its chunking and empty shards, the choice of
// kernel, the frozen library's bf16 copy, per-expert seeding and the initialisation methods.
#include <cmath>

#include <gtest/gtest.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "src/model/expert_shard.h"
#include "src/model/init.h"
#include "src/model/transformer.h"
#include "grouped_parity.h"
#include "model_fixtures.h"

using namespace some::model;

namespace {
ModelOptions small_options() { return some::test::model_options({}); }  // d 16, 2 layers, E 6, h 8, k 2
}  // namespace

TEST(Experts, GroupedEqualsNaiveIncludingEmptyExperts) {
  torch::manual_seed(1);
  ExpertOptions opts;
  ExpertShard shard(0, 0, 5, 12, 7, opts, 42);
  std::vector<int64_t> counts = {3, 0, 4, 0, 2};  // experts 1 and 3 get no tokens
  std::vector<int64_t> expert_of;
  for (int64_t e = 0; e < 5; ++e) expert_of.insert(expert_of.end(), counts[e], e);
  auto x = torch::randn({9, 12});
  auto grouped = shard->forward(x, counts);
  auto naive = shard->forward_naive(x, torch::tensor(expert_of));
  EXPECT_TRUE(torch::allclose(grouped, naive, 1e-5, 1e-6));
}

// expert.compute = grouped (two at::_grouped_mm calls for the shard) against the loop (one GEMM
// pair per expert): output, input gradient and the trainable experts' weight gradients, with
// empty experts, as relative norms (tests/grouped_parity.h, the same check as the CUDA twin):
// fp32 <= 1e-5, bf16 autocast <= 1e-2. A kernel that writes zeros is at 1 (see
// experts.grouped_check_fails_on_zeroed_kernel); and a shard given no rows.
struct GroupedCase {
  ExpertShardImpl::Kind kind;
  bool bf16;
};
class GroupedExperts : public ::testing::TestWithParam<GroupedCase> {};

TEST_P(GroupedExperts, EqualTheLoopInOutputAndGradients) {
  const auto [kind, bf16] = GetParam();
  const double tol = bf16 ? 1e-2 : 1e-5;
  auto [grouped, loop] = some::test::grouped_and_loop(5, 16, 8, 42, kind);
  const std::vector<int64_t> counts = {3, 0, 6, 0, 2};  // experts 1 and 3 get no rows
  torch::manual_seed(3);
  auto x = torch::randn({11, 16});
  auto out_grad = torch::randn({11, 16});
  auto d = some::test::grouped_vs_loop(grouped, loop, x, counts, out_grad, bf16, bf16 ? "cpu-bf16" : "cpu-fp32");
  EXPECT_LE(d.y, tol);
  EXPECT_LE(d.x_grad, tol);
  if (kind == ExpertShardImpl::Kind::kTrainable) {
    for (auto [g, l] : {std::pair{grouped->w_down, loop->w_down}, std::pair{grouped->w_up, loop->w_up}}) {
      ASSERT_TRUE(g.grad().defined());
      EXPECT_EQ(g.grad().scalar_type(), torch::kFloat32);
      EXPECT_GT(g.grad().abs().sum().item<double>(), 0);
    }
    EXPECT_LE(d.w_down_grad, tol);
    EXPECT_LE(d.w_up_grad, tol);
  } else {
    EXPECT_FALSE(grouped->w_down.requires_grad());
  }
}

INSTANTIATE_TEST_SUITE_P(Experts, GroupedExperts,
                         ::testing::Values(GroupedCase{ExpertShardImpl::Kind::kFrozen, false},
                                           GroupedCase{ExpertShardImpl::Kind::kFrozen, true},
                                           GroupedCase{ExpertShardImpl::Kind::kTrainable, false},
                                           GroupedCase{ExpertShardImpl::Kind::kTrainable, true}),
                         [](const ::testing::TestParamInfo<GroupedCase>& info) {
                           return std::string(info.param.kind == ExpertShardImpl::Kind::kFrozen ? "frozen" : "trainable") +
                                  (info.param.bf16 ? "_bf16" : "_fp32");
                         });

// The check can fail: with the grouped kernel's output zeroed (the fault hook that
// SOME_FAULT_ZERO_GROUPED_OUTPUT sets) every relative distance is 1.
TEST(Experts, GroupedCheckSeesAZeroedKernel) {
  auto [grouped, loop] = some::test::grouped_and_loop(4, 16, 8, 7, ExpertShardImpl::Kind::kTrainable);
  torch::manual_seed(2);
  auto x = torch::randn({9, 16}), out_grad = torch::randn({9, 16});
  ::setenv("SOME_FAULT_ZERO_GROUPED_OUTPUT", "1", 1);
  auto d = some::test::grouped_vs_loop(grouped, loop, x, {4, 0, 3, 2}, out_grad, false, "cpu-zeroed");
  ::unsetenv("SOME_FAULT_ZERO_GROUPED_OUTPUT");
  EXPECT_NEAR(d.y, 1.0, 1e-12);
  EXPECT_NEAR(d.x_grad, 1.0, 1e-12);
  EXPECT_NEAR(d.w_down_grad, 1.0, 1e-12);
  EXPECT_NEAR(d.w_up_grad, 1.0, 1e-12);
  EXPECT_FALSE(ExpertShardImpl::fault_zero_grouped_output);  // the hook is off again
}

// More experts than one grouped call takes (CUDA's kernel: < 1024 groups): consecutive chunks
// with their own rows and rebased offsets, equal to the loop. 2100 experts at the real limit
// (three chunks, some experts empty), and a limit of 2 on 5 experts with a chunk that gets no rows.
TEST(Experts, GroupedChunksShardsOfManyExperts) {
  for (auto kind : {ExpertShardImpl::Kind::kFrozen, ExpertShardImpl::Kind::kTrainable}) {
    const int64_t E = 2100;
    auto [grouped, loop] = some::test::grouped_and_loop(E, 16, 8, 5, kind);
    ASSERT_EQ(grouped->max_groups_per_call, 1023);
    torch::manual_seed(8);
    auto counts_t = torch::randint(0, 3, {E}, torch::kLong);  // about a third of the experts empty
    std::vector<int64_t> counts(counts_t.data_ptr<int64_t>(), counts_t.data_ptr<int64_t>() + E);
    const int64_t M = counts_t.sum().item<int64_t>();
    auto x = torch::randn({M, 16}), out_grad = torch::randn({M, 16});
    auto d = some::test::grouped_vs_loop(grouped, loop, x, counts, out_grad, false, "cpu-2100-experts");
    EXPECT_LE(d.max(), 1e-5);
    EXPECT_EQ(grouped->last_grouped_calls, 3);  // experts [0, 1023), [1023, 2046), [2046, 2100)
  }
  auto [grouped, loop] = some::test::grouped_and_loop(5, 16, 8, 6, ExpertShardImpl::Kind::kTrainable);
  grouped->max_groups_per_call = 2;  // chunks {0, 1}, {2, 3} (no rows), {4}
  auto x = torch::randn({5, 16}), out_grad = torch::randn({5, 16});
  auto d = some::test::grouped_vs_loop(grouped, loop, x, {1, 2, 0, 0, 2}, out_grad, false, "cpu-chunks-of-2");
  EXPECT_LE(d.max(), 1e-5);
  EXPECT_EQ(grouped->last_grouped_calls, 2);  // the chunk without rows is skipped
  EXPECT_EQ(grouped->w_down.grad()[2].abs().sum().item<double>(), 0.0);  // empty experts: zero gradient
}

// A shard given no rows (every token went to other ranks' experts): (0, d), still part of the
// graph — under expert parallelism the backward's all-to-all must run on every rank — and
// trainable experts get zero gradients, on both kernels.
TEST(Experts, ShardWithNoRowsStaysInTheGraph) {
  for (auto how : {ExpertCompute::kGrouped, ExpertCompute::kLoop}) {
    const auto compute = some::choice_name(how);
    for (auto kind : {ExpertShardImpl::Kind::kFrozen, ExpertShardImpl::Kind::kTrainable}) {
      ExpertOptions opts;
      opts.compute = how;
      ExpertShard shard(0, 0, 3, 16, 8, opts, 1, kind);
      auto x = torch::zeros({0, 16}).requires_grad_(true);
      auto y = shard->forward(x, std::vector<int64_t>{0, 0, 0});
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{0, 16})) << compute;
      EXPECT_EQ(shard->last_grouped_calls, 0);  // M = 0 never reaches the kernel
      ASSERT_TRUE(y.requires_grad()) << compute;
      y.sum().backward();
      ASSERT_TRUE(x.grad().defined()) << compute;
      EXPECT_EQ(x.grad().sizes(), x.sizes());
      if (kind == ExpertShardImpl::Kind::kTrainable) {
        ASSERT_TRUE(shard->w_down.grad().defined()) << compute;
        EXPECT_EQ(shard->w_down.grad().abs().sum().item<double>(), 0.0);
        EXPECT_EQ(shard->w_up.grad().abs().sum().item<double>(), 0.0);
      }
    }
  }
}

// expert.compute is a choice of kernel, not of model: a whole SoME and MoE model gives the same
// loss and gradients with either.
TEST(Experts, GroupedAndLoopModelsTrainAlike) {
  for (auto kind : {FfnKind::kSome, FfnKind::kMoe}) {
    const auto ffn = some::choice_name(kind);
    auto o = small_options();
    o.ffn = kind;
    auto build = [&](ExpertCompute compute) {
      auto opts = o;
      opts.expert.compute = compute;
      return Transformer(opts);
    };
    auto grouped = build(ExpertCompute::kGrouped), loop = build(ExpertCompute::kLoop);
    auto tokens = torch::randint(0, o.vocab_size, {2, 9}, torch::kLong);
    auto lg = grouped->loss(tokens.narrow(1, 0, 8), tokens.narrow(1, 1, 8));
    auto ll = loop->loss(tokens.narrow(1, 0, 8), tokens.narrow(1, 1, 8));
    EXPECT_NEAR(lg.item<double>(), ll.item<double>(), 1e-5) << ffn;
    lg.backward();
    ll.backward();
    auto pg = grouped->named_parameters(), pl = loop->named_parameters();
    for (auto& p : pg) {
      if (!p.value().grad().defined()) continue;
      EXPECT_LE((p.value().grad() - pl[p.key()].grad()).abs().max().item<double>(), 1e-5) << ffn << " " << p.key();
    }
  }
}

// Rows the grouped kernel cannot take (7 fp32 values = 28 bytes): auto falls back to the loop,
// a forced grouped is a ConfigError naming the option and the widths.
TEST(Experts, GroupedNeedsRowsOfSixteenByteMultiples) {
  ExpertOptions forced;
  forced.compute = ExpertCompute::kGrouped;
  ExpertShard grouped(0, 0, 2, 12, 7, forced, 1), automatic(0, 0, 2, 12, 7, ExpertOptions{}, 1);
  auto x = torch::randn({3, 12});
  EXPECT_FALSE(automatic->grouped_pays_off(x));
  EXPECT_EQ(automatic->forward(x, {2, 1}).sizes(), x.sizes());
  try {
    grouped->forward(x, {2, 1});
    FAIL() << "misaligned rows reached the grouped kernel";
  } catch (const some::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.d_expert = 7"), std::string::npos) << e.what();
  }
}

// An option's names come from its one table: parsed both ways, and an unknown one names the key
// and every choice.
TEST(Experts, UnknownChoiceIsNamed) {
  EXPECT_EQ(some::parse_choice<ExpertCompute>("expert.compute", "grouped"), ExpertCompute::kGrouped);
  EXPECT_EQ(some::choice_name(ExpertCompute::kLoop), "loop");
  try {
    some::parse_choice<ExpertCompute>("expert.compute", "fast");
    FAIL() << "expert.compute = 'fast' was accepted";
  } catch (const some::ConfigError& e) {
    EXPECT_STREQ(e.what(), "expert.compute = 'fast' is not one of auto, loop, grouped");
  }
}

// The frozen library's bf16 copy is made once, and made again when the weights are loaded anew.
TEST(Experts, FrozenCastCopyFollowsLoadedWeights) {
  ExpertOptions opts;
  opts.compute = ExpertCompute::kGrouped;
  ExpertShard shard(0, 0, 2, 8, 8, opts, 5);
  const std::vector<int64_t> counts = {2, 1};
  auto x = torch::randn({3, 8});
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  auto before = shard->forward(x, counts);
  {
    torch::NoGradGuard no_grad;
    shard->w_up.mul_(2.0);  // as a checkpoint load would copy new values in
  }
  auto after = shard->forward(x, counts);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  EXPECT_TRUE(torch::allclose(after.to(torch::kFloat32), 2 * before.to(torch::kFloat32), 1e-2, 1e-3));
}

TEST(Experts, SeededPerExpertIndependentOfSharding) {
  ExpertOptions opts;
  ExpertShard all(2, 0, 8, 16, 8, opts, 7);
  ExpertShard upper(2, 4, 4, 16, 8, opts, 7);  // experts 4..7 only, as on a second rank
  EXPECT_TRUE(torch::equal(all->w_down.narrow(0, 4, 4), upper->w_down));
  EXPECT_TRUE(torch::equal(all->w_up.narrow(0, 4, 4), upper->w_up));
}

TEST(Experts, InitMethods) {
  auto gen = seeded_generator(1, 0, 0, InitStream::kExpertDown);
  auto sparse = init_expert_matrix(64, 32, ExpertInit::kSparse, 0.75, gen);
  EXPECT_EQ((sparse == 0).sum().item<int64_t>(), 64 * 32 * 3 / 4);
  auto ortho = init_expert_matrix(64, 32, ExpertInit::kOrthogonal, 0, gen);  // orthonormal columns
  EXPECT_TRUE(torch::allclose(torch::matmul(ortho.t(), ortho), torch::eye(32), 0, 1e-4));
  auto wide = init_expert_matrix(16, 32, ExpertInit::kOrthogonal, 0, gen);   // orthonormal rows
  EXPECT_TRUE(torch::allclose(torch::matmul(wide, wide.t()), torch::eye(16), 0, 1e-4));
  auto dflt = init_expert_matrix(64, 32, ExpertInit::kDefault, 0, gen);
  EXPECT_LE(dflt.abs().max().item<float>(), 1.0 / std::sqrt(32.0) + 1e-6);
  auto keys = init_keys(5, 9, 3, 1);
  EXPECT_TRUE(torch::allclose(keys.norm(2, 1), torch::ones({5}), 0, 1e-5));
}
