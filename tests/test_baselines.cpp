// The routed baselines of docs/design.md §10 against hand-computed values: the learned gate (top-k of the
// softmax, renormalised gates), the Switch auxiliary loss, the selection bias and its update,
// hash routing, and trainable experts (gradients, names, parameter counts).
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "src/model/baselines.h"
#include "src/model/tensor_names.h"
#include "src/model/transformer.h"
#include "model_fixtures.h"

using namespace some::model;

namespace {
ModelOptions moe_options() {
  auto o = some::test::model_options({.d_model = 2, .n_heads = 1, .seq_len = 8, .num_experts = 3, .d_expert = 4, .ffn = FfnKind::kMoe});
  o.expert.activation = Activation::kRelu;
  return o;
}

// y = relu(x W_down^T) W_up^T of one expert, written out independently of ExpertShard.
torch::Tensor expert_out(ExpertShard& shard, int64_t e, const torch::Tensor& x) {
  return torch::relu(x.matmul(shard->w_down[e].t())).matmul(shard->w_up[e].t());
}
}  // namespace

TEST(MoEGate, TopKOfSoftmaxWithRenormalisedGates) {
  MoELayer layer(moe_options(), 0);
  torch::NoGradGuard no_grad;
  layer.gate_router().gate->weight.copy_(torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 1.0f}}));  // (E, d)
  auto x = torch::tensor({{1.0f, 2.0f}, {-1.0f, 0.0f}});  // logits (1, 2, 3) and (-1, 0, -1)
  auto y = layer.forward(x);
  // Token 0 picks experts 2 then 1; gates e^3 / (e^3 + e^2) = 1 / (1 + e^-1) and the rest.
  // Token 1 picks 1, then 0 (tie of experts 0 and 2 goes to the lower index); gates 1/(1+e^-1).
  EXPECT_TRUE(torch::equal(layer.last_routing().indices, torch::tensor({{2, 1}, {1, 0}}, torch::kLong)));
  const double g = 1.0 / (1.0 + std::exp(-1.0));
  auto expected0 = g * expert_out(layer.experts(), 2, x[0]) + (1 - g) * expert_out(layer.experts(), 1, x[0]);
  auto expected1 = g * expert_out(layer.experts(), 1, x[1]) + (1 - g) * expert_out(layer.experts(), 0, x[1]);
  EXPECT_TRUE(torch::allclose(y[0], expected0, 1e-5, 1e-6)) << y[0] << expected0;
  EXPECT_TRUE(torch::allclose(y[1], expected1, 1e-5, 1e-6)) << y[1] << expected1;
}

TEST(MoEGate, SwitchAuxLossByHand) {
  auto o = moe_options();
  o.moe.aux_loss = 0.5;
  MoELayer layer(o, 0);
  {
    torch::NoGradGuard no_grad;
    layer.gate_router().gate->weight.copy_(torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 1.0f}}));
  }
  auto x = torch::tensor({{1.0f, 2.0f}, {-1.0f, 0.0f}});
  layer.collect_stats = true;
  layer.forward(x);
  // Slots: expert 0 once, 1 twice, 2 once of 4 -> f = (1/4, 1/2, 1/4); P = mean softmax rows.
  auto softmax = [](std::vector<double> r) {
    double z = 0;
    for (auto& v : r) z += std::exp(v);
    for (auto& v : r) v = std::exp(v) / z;
    return r;
  };
  auto p0 = softmax({1, 2, 3}), p1 = softmax({-1, 0, -1});
  const double f[3] = {0.25, 0.5, 0.25};
  double expected = 0;
  for (int i = 0; i < 3; ++i) expected += f[i] * (p0[i] + p1[i]) / 2;
  expected *= 0.5 * 3;  // weight * E
  ASSERT_TRUE(layer.aux_loss().defined());
  EXPECT_NEAR(layer.aux_loss().item<double>(), expected, 1e-6);
  // Its gradient reaches the gate, and the load counts the slots.
  layer.aux_loss().backward();
  EXPECT_GT(layer.gate_router().gate->weight.grad().abs().sum().item<double>(), 0);
  EXPECT_TRUE(torch::equal(layer.load(), torch::tensor({1.0f, 2.0f, 1.0f})));
}

TEST(MoEGate, AuxLossIsItsWeightWhenTheGateIsUniformAndAbsentInEval) {
  auto o = moe_options();
  o.moe.aux_loss = 0.25;
  MoELayer layer(o, 0);
  torch::NoGradGuard no_grad;
  layer.gate_router().gate->weight.zero_();  // p = 1/E everywhere; ties select experts 0 and 1
  layer.collect_stats = true;
  layer.forward(torch::randn({5, 2}));
  // f = (1/2, 1/2, 0), P = 1/3: E * sum f P = 3 * (1/3) = 1, times the weight.
  EXPECT_NEAR(layer.aux_loss().item<double>(), 0.25, 1e-7);
  layer.collect_stats = false;  // eval / generation forwards
  layer.forward(torch::randn({5, 2}));
  EXPECT_FALSE(layer.aux_loss().defined());
}

TEST(MoEGate, BiasSteersSelectionNotGatesAndMovesTowardsBalance) {
  auto o = moe_options();
  o.moe.balance = MoEBalance::kBias;
  o.moe.bias_rate = 0.125;
  MoELayer layer(o, 0);
  torch::NoGradGuard no_grad;
  layer.gate_router().gate->weight.copy_(torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 1.0f}}));
  layer.gate_router().bias.copy_(torch::tensor({10.0f, 0.0f, 0.0f}));
  auto x = torch::tensor({{1.0f, 2.0f}});  // logits (1, 2, 3): without the bias experts 2, 1
  layer.collect_stats = true;
  auto y = layer.forward(x);
  EXPECT_TRUE(torch::equal(layer.last_routing().indices, torch::tensor({{0, 2}}, torch::kLong)));
  // Gates from p alone: e^1 / (e^1 + e^3) for expert 0.
  const double g0 = 1.0 / (1.0 + std::exp(2.0));
  auto expected = g0 * expert_out(layer.experts(), 0, x[0]) + (1 - g0) * expert_out(layer.experts(), 2, x[0]);
  EXPECT_TRUE(torch::allclose(y[0], expected, 1e-5, 1e-6));
  // Load (1, 0, 1), mean 2/3: b_0 and b_2 go down by the rate, b_1 up.
  layer.after_step(/*step=*/1, /*seed=*/0, /*world=*/nullptr);
  EXPECT_TRUE(torch::allclose(layer.gate_router().bias, torch::tensor({10.0f - 0.125f, 0.125f, -0.125f})));
  EXPECT_EQ(layer.load().sum().item<double>(), 0.0);  // restarts after every step
}

TEST(HashRouting, FixedDistinctExpertsPerTokenWithEqualGates) {
  auto o = moe_options();
  o.ffn = FfnKind::kHash;
  o.num_experts = 4;
  o.top_k = 3;
  auto table = hash_routing_table(o.vocab_size, o.num_experts, o.top_k, o.seed, 1);
  ASSERT_EQ(table.sizes(), (std::vector<int64_t>{50, 3}));
  for (int64_t t = 0; t < 50; ++t) {
    auto row = std::get<0>(table[t].sort());
    EXPECT_TRUE((row.slice(0, 1) != row.slice(0, 0, 2)).all().item<bool>()) << "token " << t << ": " << table[t];
    EXPECT_TRUE((table[t] >= 0).all().item<bool>() && (table[t] < 4).all().item<bool>());
  }
  // Deterministic, layer-specific, and every expert gets tokens.
  EXPECT_TRUE(torch::equal(table, hash_routing_table(50, 4, 3, o.seed, 1)));
  EXPECT_FALSE(torch::equal(table, hash_routing_table(50, 4, 3, o.seed, 2)));
  EXPECT_EQ((torch::bincount(table.flatten(), {}, 4) > 0).sum().item<int64_t>(), 4);

  HashLayer layer(o, 1);
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor({7, 7, 31}, torch::kLong);
  auto x = torch::randn({3, 2});
  auto y = layer.forward(x, ids);
  for (int64_t n = 0; n < 3; ++n) {
    auto expected = torch::zeros({2});
    for (int64_t j = 0; j < 3; ++j) expected += expert_out(layer.experts(), table[ids[n]][j].item<int64_t>(), x[n]) / 3.0;
    EXPECT_TRUE(torch::allclose(y[n], expected, 1e-5, 1e-6));
  }
  EXPECT_THROW(layer.forward(x), std::exception);  // no token ids: a clear error, not a guess
}

TEST(BaselineExperts, TrainableShardedNamesAndCounts) {
  auto o = moe_options();
  o.d_model = 8;
  o.n_heads = 2;
  Transformer model(o);
  auto tokens = torch::randint(0, 50, {2, 8}, torch::kLong);
  model->loss(tokens, tokens).backward();
  auto* layer = model->routed_layers()[0];
  EXPECT_TRUE(layer->experts()->trainable());
  ASSERT_TRUE(layer->experts()->w_down.grad().defined());
  EXPECT_GT(layer->experts()->w_up.grad().abs().sum().item<double>(), 0);
  EXPECT_TRUE(model->some_layers().empty());
  // Per-expert global names, also for tensors shaped like the parameters (AdamW moments).
  auto state = model->state_tensors();
  EXPECT_TRUE(state.count("layers.1.moe.experts.2.w_down"));
  EXPECT_TRUE(state.count("layers.1.moe.gate.weight"));
  EXPECT_TRUE(state.count("layers.1.moe.bias"));
  EXPECT_FALSE(state.count("layers.1.moe.experts.w_down"));
  auto moments = model->split_experts({{"layers.0.moe.experts.w_up", torch::zeros({3, 8, 4})}});
  EXPECT_EQ(moments.size(), 3u);
  EXPECT_EQ(moments.at("layers.0.moe.experts.1.w_up").sizes(), (std::vector<int64_t>{8, 4}));
  EXPECT_TRUE(names::is_sharded("optim.exp_avg.layers.0.moe.experts.1.w_up"));
  EXPECT_FALSE(names::is_sharded("optim.step.layers.0.moe.experts.w_up"));
  EXPECT_FALSE(names::is_frozen_expert("layers.0.moe.experts.1.w_up"));
  EXPECT_TRUE(names::is_frozen_expert("layers.0.some.experts.1.w_up"));
  // Every expert's weights count as trainable, exactly once.
  int64_t trainable = 0;
  for (auto& p : model->parameters()) trainable += p.numel();
  EXPECT_EQ(model->num_parameters(true), trainable);
  EXPECT_EQ(model->num_parameters(false), trainable);
  // The same expert gets the same weights whichever rank builds it (seeded per expert).
  ExpertShard whole(1, 0, 3, 8, 4, o.expert, o.seed, ExpertShardImpl::Kind::kTrainable, 2);
  ExpertShard last(1, 2, 1, 8, 4, o.expert, o.seed, ExpertShardImpl::Kind::kTrainable, 2);
  EXPECT_TRUE(torch::equal(whole->w_down[2], last->w_down[0]));
  EXPECT_NEAR(whole->w_down.std().item<double>(), 0.02, 0.005);
}
