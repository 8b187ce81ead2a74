// Routing (top-k, ties, gates, clamp), the SoME layer (its output per token, statistics, gradients,
// capacity) and the transformer around it (docs/design.md §1, §2); the experts themselves are
// test_expert_shard.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "src/model/key_store.h"
#include "src/model/some_layer.h"
#include "src/model/transformer.h"
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
