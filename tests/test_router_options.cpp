// SoME's router and expert options (docs/design.md §1, "Router options" and "Expert-side
// options"): hand-computed gates with a learned scale and its clamp, a selection bias that moves
// the choice but not the gates, the bias update, k-means++ on clustered points, the k-means key
// initialisation after step 1 only, per-expert output scales, and the shared expert.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/random.h"
#include "src/model/key_index.h"
#include "src/model/key_store.h"
#include "src/model/router.h"
#include "src/model/some_layer.h"

using namespace some::model;

namespace {
ModelOptions layer_options() {
  ModelOptions o;
  o.d_model = 16;
  o.num_experts = 6;
  o.top_k = 2;
  o.d_expert = 8;
  o.router.temperature = 0.5;
  return o;
}

// Every parameter and buffer `to` shares with `from` (by name) takes from's value: two layers
// that differ only by an option start from the same weights.
void copy_common(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto params = from.named_parameters(), buffers = from.named_buffers();
  for (auto& p : to.named_parameters()) {
    if (auto* v = params.find(p.key())) p.value().copy_(*v);
  }
  for (auto& b : to.named_buffers()) {
    if (auto* v = buffers.find(b.key())) b.value().copy_(*v);
  }
}

// Unit keys in R^2 against which q = (1, 0) scores the given cosines.
torch::Tensor keys_with_scores(const std::vector<double>& cosines) {
  std::vector<float> flat;
  for (double c : cosines) flat.insert(flat.end(), {static_cast<float>(c), static_cast<float>(std::sqrt(1 - c * c))});
  return torch::tensor(flat).view({static_cast<int64_t>(cosines.size()), 2});
}
}  // namespace

// Scores (0.9, 0.5) with exp(s) = 2: logits (1.8, 1.0), gates softmax = (1 / (1 + e^-0.8), ...).
TEST(RouterOptions, LearnedScaleMultipliesTheScoresAndIsClamped) {
  RouterOptions r;
  r.temperature = 0.25;  // ignored once a scale is given
  auto keys = keys_with_scores({0.9, 0.5, 0.1});
  auto q = torch::tensor({1.f, 0.f}).view({1, 2});
  auto log_scale = torch::full({1}, std::log(2.0), torch::requires_grad());
  auto routing = route(q, keys, 2, ScoreFunction::kCosine, r, log_scale);
  const double g0 = 1.0 / (1.0 + std::exp(-0.8));
  EXPECT_NEAR(routing.gates[0][0].item<float>(), g0, 1e-6);
  EXPECT_NEAR(routing.gates[0][1].item<float>(), 1 - g0, 1e-6);
  // d gate_0 / d s = g0 (1 - g0) (1.8 - 1.0): the scale trains.
  routing.gates[0][0].backward();
  EXPECT_NEAR(log_scale.grad().item<float>(), g0 * (1 - g0) * 0.8, 1e-5);
  // exp(s) above max_scale acts as max_scale: s = log 1000, max 4 -> logits (3.6, 2.0).
  r.max_scale = 4;
  auto clamped = route(q, keys, 2, ScoreFunction::kCosine, r, torch::full({1}, std::log(1000.0)));
  EXPECT_NEAR(clamped.gates[0][0].item<float>(), 1.0 / (1.0 + std::exp(-1.6)), 1e-6);
}

TEST(RouterOptions, LearnedScaleStartsAtOneOverTemperature) {
  auto o = layer_options();
  SoMELayer plain(o, 1);
  o.router.gate_scale = Scale::kLearnable;
  SoMELayer learned(o, 1);
  auto log_scale = learned.named_parameters()["gate_log_scale"];
  EXPECT_NEAR(log_scale.item<float>(), std::log(2.0), 1e-6);
  // Same seed, same weights: the same gates at initialisation.
  copy_common(plain, learned);
  auto x = torch::randn({12, 16});
  plain.forward(x);
  learned.forward(x);
  EXPECT_TRUE(torch::allclose(plain.last_routing().gates, learned.last_routing().gates, 1e-6, 1e-6));
}

// Scores (0.9, 0.5, 0.1), bias (0, 0, 0.9): top-2 of the biased (0.9, 0.5, 1.0) is (2, 0), and
// the gates are softmax of the unbiased selected scores (0.1, 0.9) / tau.
TEST(RouterOptions, SelectionBiasMovesTheChoiceNotTheGates) {
  RouterOptions r;
  r.temperature = 0.5;
  auto keys = keys_with_scores({0.9, 0.5, 0.1});
  auto q = torch::tensor({1.f, 0.f}).view({1, 2});
  auto routing = route(q, keys, 2, ScoreFunction::kCosine, r, {}, torch::tensor({0.f, 0.f, 0.9f}));
  EXPECT_EQ(routing.indices[0][0].item<int64_t>(), 2);
  EXPECT_EQ(routing.indices[0][1].item<int64_t>(), 0);
  const double g = 1.0 / (1.0 + std::exp((0.9 - 0.1) / 0.5));
  EXPECT_NEAR(routing.gates[0][0].item<float>(), g, 1e-6);
  EXPECT_NEAR(routing.scores[0][0].item<float>(), 0.1, 1e-6);
}

// Loads (4, 0, 2): mean 2, so b += rate * (-1, +1, 0).
TEST(RouterOptions, SelectionBiasStepsTowardBalance) {
  auto bias = torch::tensor({0.5f, 0.f, 0.f});
  update_selection_bias(bias, torch::tensor({4.f, 0.f, 2.f}), 0.1);
  EXPECT_TRUE(torch::allclose(bias, torch::tensor({0.4f, 0.1f, 0.f})));
}

// Three tight clusters on the sphere: k-means++ with 3 centres finds all three (each centre
// within cos 0.99 of a cluster's direction), the same for the same seed; fewer points than
// centres gives one centre per point.
TEST(RouterOptions, KMeansPlusPlusFindsTheClusters) {
  torch::manual_seed(8);
  auto directions = torch::nn::functional::normalize(torch::randn({3, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto points = directions.repeat({40, 1}) + 0.02 * torch::randn({120, 8});
  points = torch::nn::functional::normalize(points, torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto centres = kmeans_plus_plus(points, 3, 77, 5);
  ASSERT_EQ(centres.size(0), 3);
  EXPECT_TRUE(torch::allclose(centres.norm(2, 1), torch::ones({3}), 0, 1e-5));
  auto best = std::get<0>(torch::mm(directions, centres.t()).max(1));  // each cluster's nearest centre
  EXPECT_GT(best.min().item<float>(), 0.99f);
  EXPECT_TRUE(torch::equal(centres, kmeans_plus_plus(points, 3, 77, 5)));
  EXPECT_EQ(kmeans_plus_plus(points.narrow(0, 0, 2), 5, 77, 5).size(0), 2);
}

// router.key_init = data: after step 1 the keys are exactly the k-means++ centres of that step's
// queries (all 64 are in the pool), seeded by (train.seed, step, layer); the update after a later
// step (a resumed run) is Knowledge Gravity.
TEST(RouterOptions, KMeansKeysAfterTheFirstStepOnly) {
  auto o = layer_options();
  o.router.key_init = KeyInit::kData;
  SoMELayer layer(o, 1);
  layer.collect_stats = true;
  auto x = torch::randn({64, 16});
  layer.forward(x);
  const auto before = layer.key_store()->keys().clone();
  std::vector<torch::Tensor> stats;
  layer.step_statistics(stats);
  layer.after_step(1, 5, nullptr);
  const auto& keys = layer.key_store()->keys();
  EXPECT_FALSE(torch::allclose(keys, before));
  EXPECT_TRUE(torch::allclose(keys.norm(2, 1), torch::ones({6}), 0, 1e-5));
  torch::NoGradGuard no_grad;
  auto queries = layer.router().route(x, {}, false).queries;  // (64, d), normalised
  EXPECT_TRUE(torch::allclose(keys, kmeans_plus_plus(queries, 6, some::hash_u64(5, 1, 1), 5), 0, 1e-6));

  // A second layer that (as after a resume) first updates at step 9: gravity, not k-means.
  SoMELayer resumed(o, 1);
  resumed.collect_stats = true;
  resumed.forward(x);
  const auto start = resumed.key_store()->keys().clone();
  resumed.after_step(9, 5, nullptr);
  auto moved = (resumed.key_store()->keys() - start).norm(2, 1);
  EXPECT_LT(moved.max().item<float>(), 0.05f);  // gravity's small steps (alpha 0.01), not a jump
  EXPECT_GT(moved.max().item<float>(), 0.0f);
}

// All scales 1: the output of the plain layer. All scales 2: twice it. The scales get gradients.
TEST(RouterOptions, ExpertOutputScaleMultipliesEachExpertsOutput) {
  auto o = layer_options();
  SoMELayer plain(o, 1);
  o.expert.output_scale = Scale::kLearnable;
  SoMELayer scaled(o, 1);
  copy_common(plain, scaled);
  auto x = torch::randn({10, 16});
  auto y = plain.forward(x).detach();
  auto scale = scaled.named_parameters()["expert_scale"];
  EXPECT_TRUE(torch::allclose(scaled.forward(x), y, 1e-6, 1e-6));
  {
    torch::NoGradGuard no_grad;
    scale.fill_(2.0);
  }
  auto y2 = scaled.forward(x);
  EXPECT_TRUE(torch::allclose(y2, 2 * y, 1e-5, 1e-6));
  y2.sum().backward();
  EXPECT_GT(scale.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(scaled.experts()->w_down, plain.experts()->w_down));  // the experts stay frozen
}

// The shared expert adds a dense FFN of every token to the routed output; its parameters and
// FLOPs are counted.
TEST(RouterOptions, SharedExpertAddsADenseFFNOfEveryToken) {
  auto o = layer_options();
  SoMELayer plain(o, 1);
  o.shared_expert = 12;
  SoMELayer shared(o, 1);
  copy_common(plain, shared);
  auto x = torch::randn({10, 16});
  auto ffn = shared.named_children()["shared"];
  ASSERT_TRUE(ffn);
  auto dense = std::dynamic_pointer_cast<FeedForward>(ffn);
  auto want = plain.forward(x) + dense->forward(x);
  EXPECT_TRUE(torch::allclose(shared.forward(x), want, 1e-6, 1e-6));
  EXPECT_DOUBLE_EQ(shared.forward_flops_per_token() - plain.forward_flops_per_token(), 2.0 * 2 * 16 * 12);
  int64_t extra = 0;
  for (const auto& p : ffn->parameters()) extra += p.numel();
  EXPECT_EQ(extra, 2 * 16 * 12);
}

TEST(RouterSearch, IvfScanningEveryListRoutesExactlyAsExactSearch) {
  // router.search = ivf with ivf_probe = ivf_lists scans every key: the same experts, gates and
  // query gradient as exact search — through three Knowledge Gravity steps, so the index's
  // incremental update after each step is exercised too.
  if (!key_search_available(KeySearch::kIvf)) GTEST_SKIP() << "built without FAISS";
  torch::manual_seed(21);
  const int64_t E = 64, d = 16, k = 2;
  RouterOptions exact_opts, ivf_opts;
  ivf_opts.search = KeySearch::kIvf;
  ivf_opts.ivf_lists = 8;
  ivf_opts.ivf_probe = 8;
  GravityOptions g;
  g.alpha = 0.2;
  g.beta = 0.1;
  auto keys0 = torch::randn({E, d});
  KeyStore exact(keys0.clone(), torch::ones({E}), k, exact_opts, g);
  KeyStore ivf(keys0.clone(), torch::ones({E}), k, ivf_opts, g);
  ivf.set_index_state(torch::zeros({8, d}));
  for (int step = 0; step < 3; ++step) {
    auto q = torch::randn({128, d}, torch::requires_grad());
    auto q2 = q.detach().clone().requires_grad_(true);
    auto re = exact.route(q), ri = ivf.route(q2);
    ASSERT_TRUE(torch::equal(re.indices, ri.indices)) << "step " << step;
    EXPECT_TRUE(torch::allclose(re.gates, ri.gates, 1e-6, 1e-6));
    (re.gates * torch::arange(2 * 128).view({128, 2})).sum().backward();
    (ri.gates * torch::arange(2 * 128).view({128, 2})).sum().backward();
    // The same gradient up to fp32 rounding (k dot products instead of a gathered (N, E) matmul).
    EXPECT_TRUE(torch::allclose(q.grad(), q2.grad(), 1e-4, 1e-5)) << (q.grad() - q2.grad()).abs().max() << " of " << q.grad().abs().max();
    exact.accumulate(re);
    ivf.accumulate(ri);
    exact.apply_gravity(step);
    ivf.apply_gravity(step);
    EXPECT_TRUE(torch::equal(exact.keys(), ivf.keys()));
  }
}

TEST(RouterSearch, IvfIndexFollowsKeysChangedOutsideGravity) {
  // A checkpoint load writes the keys in place: the next route must see the new keys (the index is
  // rebuilt with the stored centres), not the old index.
  if (!key_search_available(KeySearch::kIvf)) GTEST_SKIP() << "built without FAISS";
  torch::manual_seed(22);
  const int64_t E = 32, d = 8;
  RouterOptions r;
  r.search = KeySearch::kIvf;
  r.ivf_lists = 4;
  r.ivf_probe = 4;
  auto keys = torch::randn({E, d});
  auto centres = torch::zeros({4, d});
  KeyStore store(keys, torch::ones({E}), 2, r, GravityOptions());
  store.set_index_state(centres);
  auto q = torch::randn({16, d});
  store.route(q);
  EXPECT_GT(centres.abs().sum().item<double>(), 0);  // trained at the first route, into the buffer
  const auto trained = centres.clone();
  {
    torch::NoGradGuard no_grad;
    keys.copy_(torch::randn({E, d}));  // what a load does
  }
  KeyStore reference(keys.clone(), torch::ones({E}), 2, RouterOptions(), GravityOptions());
  EXPECT_TRUE(torch::equal(store.route(q).indices, reference.route(q).indices));
  EXPECT_TRUE(torch::equal(centres, trained));  // the stored centres were reused, not retrained
}
