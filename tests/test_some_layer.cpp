// Routing (top-k, ties, gates, clamp), grouped expert compute against the naive per-token
// reference, expert initialisation, and the frozen-expert guarantees (docs/design.md §1, §2).
#include <gtest/gtest.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "src/model/expert_shard.h"
#include "src/model/init.h"
#include "src/model/key_store.h"
#include "src/model/some_layer.h"
#include "src/model/transformer.h"
#include "grouped_parity.h"
#include "model_fixtures.h"

using namespace some::model;

namespace {
ModelOptions small_options() { return some::test::model_options({}); }  // d 16, 2 layers, E 6, h 8, k 2
}  // namespace

TEST(Routing, TopKMatchesSortedScoresAndGatesSumToOne) {
  torch::manual_seed(0);
  RouterOptions r;
  r.temperature = 0.5;
  auto q = torch::randn({40, 8}), keys = torch::randn({10, 8});
  auto routing = route(q, keys, 3, ScoreFunction::kCosine, r);
  auto scores = routing_scores(q, keys, ScoreFunction::kCosine);
  auto expected = std::get<1>(scores.topk(3, 1));
  EXPECT_TRUE(torch::equal(routing.indices, expected));
  EXPECT_TRUE(torch::allclose(routing.gates.sum(1), torch::ones({40}), 0, 1e-6));
  // Gate = softmax of the selected scores / tau, best expert gets the largest gate.
  auto manual = torch::softmax(scores.gather(1, expected) / 0.5, 1);
  EXPECT_TRUE(torch::allclose(routing.gates, manual, 0, 1e-6));
  EXPECT_TRUE((routing.gates.select(1, 0) >= routing.gates.select(1, 2)).all().item<bool>());
}

TEST(Routing, TiesGoToTheLowerIndex) {
  RouterOptions r;
  auto keys = torch::tensor({0.f, 1.f, 1.f, 0.f, 1.f, 0.f, 1.f, 0.f}).view({4, 2});  // 1, 2, 3 equal
  auto q = torch::tensor({1.f, 0.f}).view({1, 2});
  auto routing = route(q, keys, 2, ScoreFunction::kCosine, r);
  EXPECT_EQ(routing.indices[0][0].item<int64_t>(), 1);
  EXPECT_EQ(routing.indices[0][1].item<int64_t>(), 2);
}

// stable_top_k's argmax rounds (k <= 8) against the stable descending sort it stands for, on
// scores with many exact ties (values rounded to eighths) and on the learned gate's bf16.
TEST(Routing, StableTopKEqualsAStableSortWithTies) {
  torch::manual_seed(21);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    auto scores = (torch::randn({300, 16}) * 4).round().div(8).to(dtype);
    for (int64_t k : {1, 2, 3, 8, 9, 16}) {
      auto sorted = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/true)).narrow(1, 0, k);
      EXPECT_TRUE(torch::equal(stable_top_k(scores, k), sorted)) << "k " << k << " " << dtype;
    }
  }
}

TEST(Routing, LogitClampBoundsTheGateLogits) {
  RouterOptions r;
  r.temperature = 0.001;  // cosine scores / tau would be ~1000
  r.logit_clamp = 2.0;
  auto keys = torch::tensor({1.f, 0.f, 0.f, 1.f}).view({2, 2});
  auto q = torch::tensor({1.f, 0.f}).view({1, 2});  // scores (1, 0) -> logits clamp to (2, 0)
  auto routing = route(q, keys, 2, ScoreFunction::kCosine, r);
  auto expected = torch::softmax(torch::tensor({2.f, 0.f}), 0);
  EXPECT_TRUE(torch::allclose(routing.gates[0], expected, 0, 1e-6));
}

TEST(Routing, DotScoresAreRawProducts) {
  RouterOptions r;
  auto keys = torch::tensor({2.f, 0.f, 0.f, 1.f}).view({2, 2});
  auto q = torch::tensor({1.f, 3.f}).view({1, 2});
  EXPECT_TRUE(torch::allclose(routing_scores(q, keys, ScoreFunction::kDot), torch::tensor({2.f, 3.f}).view({1, 2})));
  EXPECT_EQ(route(q, keys, 1, ScoreFunction::kDot, r).indices[0][0].item<int64_t>(), 1);
}

// The sums behind ffn_out_ratio: with the attention's output projection zeroed the residual
// entering the FFN is the block's input, so a training forward adds (sum_t ||FFN(RMSNorm(x_t))||,
// sum_t ||x_t||); two forwards add twice; an eval forward adds nothing.
TEST(Transformer, BlockSumsFfnOutputAndResidualNorms) {
  auto o = small_options();
  o.d_ff = 12;
  Block block(o, 0, FfnKind::kDense, nullptr);
  torch::NoGradGuard no_grad;
  block->named_parameters()["attn.proj.weight"].zero_();
  auto x = torch::randn({2, 5, 16});
  block->collect_stats = true;
  block->forward(x, {});
  block->forward(x, {});
  auto y = block->ffn->forward(at::rms_norm(x.reshape({-1, 16}), {16}, {}, 1e-6));
  auto want = 2 * torch::stack({y.norm(2, -1).sum(), x.norm(2, -1).sum()});
  EXPECT_TRUE(torch::allclose(block->norms, want, 1e-5, 1e-5)) << block->norms << want;
  block->collect_stats = false;
  block->forward(x, {});
  EXPECT_TRUE(torch::allclose(block->norms, want, 1e-5, 1e-5));
}

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

TEST(SoMELayer, OutputEqualsPerTokenSumOfGatedExperts) {
  torch::manual_seed(2);
  auto opts = small_options();
  SoMELayer layer(opts, 0);
  auto x = torch::randn({11, opts.d_model});
  auto y = layer.forward(x);
  const auto& r = layer.last_routing();
  auto& w = layer.experts();
  for (int64_t t = 0; t < 11; ++t) {
    auto expected = torch::zeros({opts.d_model});
    for (int64_t j = 0; j < opts.top_k; ++j) {
      auto e = r.indices[t][j].item<int64_t>();
      auto h = torch::gelu(torch::mv(w->w_down[e], x[t]));
      expected += r.gates[t][j] * torch::mv(w->w_up[e], h);
    }
    EXPECT_TRUE(torch::allclose(y[t], expected, 1e-5, 1e-6)) << "token " << t;
  }
}

TEST(SoMELayer, StatisticsOnlyWhenCollecting) {
  auto opts = small_options();
  SoMELayer layer(opts, 0);
  auto x = torch::randn({7, opts.d_model});
  layer.forward(x);
  EXPECT_EQ(layer.some_router().store().stats().n().sum().item<float>(), 0.f);
  layer.collect_stats = true;
  layer.forward(x);
  EXPECT_EQ(layer.some_router().store().stats().n().sum().item<float>(), 7.f * opts.top_k);
}

TEST(SoMELayer, GradientsReachQueryAndInputButNotExperts) {
  auto opts = small_options();
  SoMELayer layer(opts, 0);
  auto x = torch::randn({9, opts.d_model}, torch::requires_grad());
  layer.forward(x).pow(2).sum().backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<float>(), 0.f);
  for (auto& p : layer.named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<float>(), 0.f) << p.key();
  }
  EXPECT_FALSE(layer.experts()->w_down.requires_grad());
  EXPECT_FALSE(layer.experts()->w_down.grad().defined());
  EXPECT_FALSE(layer.key_store()->keys().grad().defined());
  // Only the query network is trainable in a SoME layer.
  for (auto& p : layer.named_parameters()) EXPECT_EQ(p.key().rfind("query.", 0), 0u) << p.key();
}

TEST(Transformer, GlobalNamesAndTrainableSplit) {
  auto opts = small_options();
  opts.routed_layers = RoutedLayers::kEveryOther;
  Transformer model(opts);
  auto state = model->state_tensors();
  EXPECT_TRUE(state.count("layers.1.some.keys"));
  EXPECT_TRUE(state.count("layers.1.some.usage"));
  // One (h, d) / (d, h) tensor per expert, a view into the stacked shard.
  for (int64_t i = 0; i < opts.num_experts; ++i) {
    const auto prefix = "layers.1.some.experts." + std::to_string(i) + ".";
    ASSERT_TRUE(state.count(prefix + "w_down"));
    EXPECT_EQ(state.at(prefix + "w_down").sizes(), (std::vector<int64_t>{opts.d_expert, opts.d_model}));
    EXPECT_EQ(state.at(prefix + "w_up").sizes(), (std::vector<int64_t>{opts.d_model, opts.d_expert}));
  }
  EXPECT_FALSE(state.count("layers.1.some.experts.w_down"));
  state.at("layers.1.some.experts.2.w_down").fill_(7.0);
  auto* layer = model->some_layers()[0];
  EXPECT_TRUE(torch::all(layer->experts()->w_down[2] == 7.0).item<bool>());
  EXPECT_TRUE(state.count("layers.0.dense.up.weight"));
  EXPECT_EQ(model->some_layer_indices(), std::vector<int64_t>{1});
  int64_t trainable = 0;
  for (auto& p : model->decay_parameters()) trainable += p.numel();
  for (auto& p : model->no_decay_parameters()) trainable += p.numel();
  EXPECT_EQ(trainable, model->num_parameters(true));
  EXPECT_GT(model->num_parameters(false), model->num_parameters(true));
}

TEST(SoMELayer, UsageStartsAtFairShareForEmaAndZeroForCumulative) {
  auto opts = small_options();
  SoMELayer ema(opts, 0);
  EXPECT_TRUE(torch::equal(ema.key_store()->usage(), torch::ones({opts.num_experts})));
  opts.gravity.usage = UsageTracking::kCumulative;
  SoMELayer cumulative(opts, 0);
  EXPECT_TRUE(torch::equal(cumulative.key_store()->usage(), torch::zeros({opts.num_experts})));
}

TEST(SoMELayer, CapacityDropsTheOverflowInTokenOrder) {
  auto opts = small_options();
  opts.capacity_factor = 0.5;  // capacity = ceil(0.5 * N*k / E) slots per expert
  SoMELayer layer(opts, 0);
  layer.collect_stats = true;
  torch::manual_seed(8);
  const int64_t N = 30;
  auto x = torch::randn({N, opts.d_model});
  auto y = layer.forward(x);
  const auto& r = layer.last_routing();
  const int64_t capacity = (N * opts.top_k + 2 * opts.num_experts - 1) / (2 * opts.num_experts);
  // Reference: per expert, the first `capacity` (token, choice) slots in token order are computed.
  std::vector<int64_t> used(opts.num_experts, 0);
  int64_t dropped = 0;
  auto& w = layer.experts();
  auto expected = torch::zeros_like(y);
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t j = 0; j < opts.top_k; ++j) {
      auto e = r.indices[t][j].item<int64_t>();
      if (used[e]++ >= capacity) {
        ++dropped;
        continue;
      }
      expected[t] += r.gates[t][j] * torch::mv(w->w_up[e], torch::gelu(torch::mv(w->w_down[e], x[t])));
    }
  }
  EXPECT_GT(dropped, 0) << "the example must overflow some expert";
  EXPECT_EQ(layer.dropped_slots(), dropped);
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-6));
}

// --ablate-ffn: block L's FFN output left out of the residual stream is the same model as one whose
// FFN writes zeros (a dense FFN with its down projection zeroed), and other blocks are untouched.
TEST(Ablation, AnAblatedFfnIsAZeroFfn) {
  auto o = small_options();
  o.ffn = FfnKind::kDense;
  o.d_ff = 24;
  Transformer model(o), zeroed(o);
  {
    torch::NoGradGuard no_grad;
    auto src = model->named_parameters();
    for (auto& p : zeroed->named_parameters()) p.value().copy_(src[p.key()]);
    zeroed->named_parameters()["layers.1.dense.down.weight"].zero_();
  }
  auto tokens = torch::randint(0, o.vocab_size, {2, 9}, torch::kLong);
  auto loss = [&](Transformer& m) { return m->loss(tokens.narrow(1, 0, 8), tokens.narrow(1, 1, 8)).item<double>(); };
  const double full = loss(model);
  model->ablate_ffn(1);
  EXPECT_EQ(loss(model), loss(zeroed));
  EXPECT_NE(loss(model), full);
  model->ablate_ffn(-1);
  EXPECT_EQ(loss(model), full);
  EXPECT_THROW(model->ablate_ffn(2), some::ConfigError);
}
