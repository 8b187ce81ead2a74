// Knowledge Gravity against hand-computed values on a 4-expert, 2-d example (docs/design.md §3).
//
// Keys K0=(1,0) K1=(0,1) K2=(-1,0) K3=(0,-1); k = 2; three tokens:
//   t0 selects {0,1} with q̂=(0.6,0.8); t1 selects {0,1} with q̂=(1,0); t2 selects {1,2} with q̂=(0,1)
// => n = [2,3,1,0], S0=(1.6,0.8), S1=(1.6,1.8), S2=(0,1), C01=C10=2, C12=C21=1.
// EMA usage with rho = 0.5 from u = 0: share = 4 n / 6, u = [2/3, 1, 1/3, 0], 1/(1+u) = [.6, .5, .75, 1].
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "src/model/key_store.h"

using some::model::GravityOptions;
using some::model::GravityStats;
using some::model::knowledge_gravity;
using some::model::Routing;

namespace {

struct Example {
  torch::Tensor keys = torch::tensor({1.f, 0.f, 0.f, 1.f, -1.f, 0.f, 0.f, -1.f}).view({4, 2});
  torch::Tensor usage = torch::zeros({4});
  GravityStats stats{4, 2, torch::TensorOptions()};
  Example() {
    Routing r;
    r.indices = torch::tensor({0, 1, 0, 1, 1, 2}, torch::kLong).view({3, 2});
    r.queries = torch::tensor({0.6f, 0.8f, 1.f, 0.f, 0.f, 1.f}).view({3, 2});
    r.scores = torch::zeros({3, 2});
    stats.add(r);
  }
  torch::Tensor run(const GravityOptions& g) {
    knowledge_gravity(keys, usage, stats.n(), stats.S(), stats.peer_sums(keys), 2, g);
    return keys;
  }
};

GravityOptions only(bool alpha, bool beta, bool delta, bool repulsion) {
  GravityOptions g;
  g.alpha = 0.1;
  g.beta = 0.2;
  g.delta = 0.5;
  g.repulsion = 0.05;
  g.ema_decay = 0.5;
  g.use_alpha = alpha;
  g.use_beta = beta;
  g.use_delta = delta;
  g.use_repulsion = repulsion;
  return g;
}

torch::Tensor mat(std::vector<float> v) { return torch::tensor(v).view({4, 2}); }

void expect_near(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-6) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::allclose(a, b, 0, tol)) << "got\n" << a << "\nexpected\n" << b;
}

}  // namespace

TEST(GravityStats, CountsQuerySumsAndCoactivations) {
  Example ex;
  expect_near(ex.stats.n(), torch::tensor({2.f, 3.f, 1.f, 0.f}));
  expect_near(ex.stats.S(), mat({1.6f, 0.8f, 1.6f, 1.8f, 0.f, 1.f, 0.f, 0.f}));
  auto C = torch::zeros({4, 4});
  C[0][1] = 2; C[1][0] = 2; C[1][2] = 1; C[2][1] = 1;
  expect_near(ex.stats.C(), C);
  // c_i = sum_j C_ij = (k - 1) n_i.
  expect_near(ex.stats.C().sum(1), ex.stats.n());
}

TEST(Gravity, QueryPullAlone) {
  Example ex;
  auto k = ex.run(only(true, false, false, false));
  // dK0 = .1*.6*((.8,.4)-(1,0)); dK1 = .1*.5*((1.6/3,.6)-(0,1)); dK2 = .1*.75*((0,1)-(-1,0)); K3 unused.
  expect_near(k, mat({1 - 0.012f, 0.024f, 0.0266667f, 1 - 0.02f, -1 + 0.075f, 0.075f, 0.f, -1.f}));
  expect_near(ex.usage, torch::tensor({2.f / 3, 1.f, 1.f / 3, 0.f}));
}

TEST(Gravity, PeerPullAlone) {
  Example ex;
  auto k = ex.run(only(false, true, false, false));
  // P0/c0 = K1 -> dK0 = .2*.6*((0,1)-(1,0)); P1/c1 = (2K0+K2)/3 = (1/3,0) -> dK1 = .2*.5*((1/3,0)-(0,1));
  // P2/c2 = K1 -> dK2 = .2*.75*((0,1)-(-1,0)); c3 = 0 -> no pull.
  expect_near(k, mat({1 - 0.12f, 0.12f, 0.0333333f, 1 - 0.1f, -1 + 0.15f, 0.15f, 0.f, -1.f}));
}

TEST(Gravity, RepulsionAlone) {
  Example ex;
  auto k = ex.run(only(false, false, false, true));
  // Sum of keys is 0, so mean of the others is -K_i/3 and dK_i = .05 * (4/3) K_i.
  expect_near(k, mat({1.f, 0.f, 0.f, 1.f, -1.f, 0.f, 0.f, -1.f}) * (1 + 0.05f * 4 / 3));
}

TEST(Gravity, PercentileDecayAlone) {
  Example ex;
  auto k = ex.run(only(false, false, true, false));
  // 10th percentile of u = [2/3, 1, 1/3, 0] is 0.1 (linear interpolation): only expert 3 decays.
  expect_near(k, mat({1.f, 0.f, 0.f, 1.f, -1.f, 0.f, 0.f, -0.5f}));
}

TEST(Gravity, ThresholdDecay) {
  Example ex;
  auto g = only(false, false, true, false);
  g.decay_threshold = 0.5;  // u < 0.5: experts 2 and 3
  auto k = ex.run(g);
  expect_near(k, mat({1.f, 0.f, 0.f, 1.f, -0.5f, 0.f, 0.f, -0.5f}));
}

TEST(Gravity, JacobiOrderAllForcesReadOldKeys) {
  // The combined update equals the sum of the single-force updates from the same old keys;
  // an in-order (Gauss-Seidel) implementation would let peer pull see query-pulled keys.
  auto delta_of = [](GravityOptions g) {
    Example ex;
    auto before = ex.keys.clone();
    return ex.run(g) - before;
  };
  auto both = delta_of(only(true, true, false, true));
  auto sum = delta_of(only(true, false, false, false)) + delta_of(only(false, true, false, false)) +
             delta_of(only(false, false, false, true));
  expect_near(both, sum);
}

TEST(Gravity, InertiaOffUsesPlainAlpha) {
  Example ex;
  auto g = only(true, false, false, false);
  g.inertia = false;
  auto k = ex.run(g);
  expect_near(k[2], torch::tensor({-1 + 0.1f, 0.1f}));  // .1 * ((0,1) - (-1,0))
}

TEST(Gravity, UsageEmaAndCumulative) {
  Example ema;
  auto g = only(false, false, false, false);
  ema.run(g);
  ema.run(g);  // same statistics again: u = .5 * u + .5 * share
  expect_near(ema.usage, torch::tensor({1.f, 1.5f, 0.5f, 0.f}));
  Example cum;
  g.usage = some::model::UsageTracking::kCumulative;
  cum.run(g);
  cum.run(g);
  expect_near(cum.usage, torch::tensor({8.f / 3, 4.f, 4.f / 3, 0.f}));
}

TEST(Gravity, MaxKeyNormClamp) {
  Example ex;
  ex.keys.mul_(3.0);
  ex.keys[0].mul_(0.1);  // norm 0.3: below the clamp, untouched
  auto g = only(false, false, false, false);
  g.max_key_norm = 1.5;
  auto k = ex.run(g);
  expect_near(k.norm(2, 1), torch::tensor({0.3f, 1.5f, 1.5f, 1.5f}));
}

TEST(GravityStats, PeerSumEqualsCTimesK) {
  // P = C K equals the per-token sum of the other selected keys (docs/design.md §3).
  torch::manual_seed(3);
  const int64_t E = 8, d = 5, N = 50, k = 3;
  auto keys = torch::randn({E, d});
  auto scores = torch::randn({N, E});
  Routing r;
  r.indices = std::get<1>(scores.topk(k, 1));
  r.queries = torch::randn({N, d});
  r.scores = torch::zeros({N, k});
  GravityStats stats(E, d, torch::TensorOptions());
  stats.add(r);
  auto expected = torch::zeros({E, d});
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t a = 0; a < k; ++a) {
      for (int64_t b = 0; b < k; ++b) {
        if (a == b) continue;
        expected[r.indices[t][a].item<int64_t>()] += keys[r.indices[t][b].item<int64_t>()];
      }
    }
  }
  expect_near(torch::matmul(stats.C(), keys), expected, 1e-4);
  // gravity.peer_stats = peer_sum accumulates the same P directly, without C.
  GravityStats peer(E, d, torch::TensorOptions(), some::model::PeerStats::kPeerSum);
  peer.add(r, keys);
  EXPECT_EQ(peer.flat().numel(), E + 2 * E * d);
  expect_near(peer.peer_sums(keys), expected, 1e-4);
  expect_near(peer.n(), stats.n(), 0);
  expect_near(peer.S(), stats.S(), 0);
  EXPECT_THROW(peer.C(), c10::Error);
  EXPECT_THROW(peer.add(r), c10::Error);  // peer sums need the keys
}

TEST(GravityStats, PeerStatsAutoChoosesTheSmallerBuffer) {
  using some::model::PeerStats;
  using some::model::resolve_peer_stats;
  EXPECT_EQ(resolve_peer_stats(PeerStats::kAuto, 64, 256), PeerStats::kCoactivation);   // E*E < E*d
  EXPECT_EQ(resolve_peer_stats(PeerStats::kAuto, 256, 256), PeerStats::kCoactivation);  // equal: keep C for analytics
  EXPECT_EQ(resolve_peer_stats(PeerStats::kAuto, 257, 256), PeerStats::kPeerSum);
  EXPECT_EQ(resolve_peer_stats(PeerStats::kPeerSum, 8, 256), PeerStats::kPeerSum);
  EXPECT_EQ(resolve_peer_stats(PeerStats::kCoactivation, 4096, 256), PeerStats::kCoactivation);
  try {
    some::parse_choice<PeerStats>("gravity.peer_stats", "dense");
    FAIL() << "expected a ConfigError";
  } catch (const some::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("gravity.peer_stats = 'dense'"), std::string::npos) << e.what();
  }
}

TEST(KeyStore, PeerSumAndCoactivationGiveTheSameUpdate) {
  // Two replicas of one key store, one reducing C and one P: several micro-batches, three
  // Knowledge Gravity steps with every force on (EMA usage, inertia, peer pull, decay,
  // repulsion): the keys agree to 1e-6 after each step.
  using some::model::KeyStore;
  torch::manual_seed(11);
  const int64_t E = 40, d = 8, k = 3;
  GravityOptions g;
  g.alpha = 0.05;
  g.beta = 0.3;
  g.delta = 0.01;
  g.repulsion = 0.01;
  auto keys0 = torch::randn({E, d});
  using some::model::PeerStats;
  auto make = [&](PeerStats peer) {
    GravityOptions o = g;
    o.peer_stats = peer;
    return KeyStore(keys0.clone(), torch::ones({E}), k, some::model::RouterOptions(), o);
  };
  auto coact = make(PeerStats::kCoactivation), peer = make(PeerStats::kPeerSum);
  for (int step = 0; step < 3; ++step) {
    for (int micro = 0; micro < 3; ++micro) {
      auto q = torch::randn({64, d});
      auto rc = coact.route(q), rp = peer.route(q);
      ASSERT_TRUE(torch::equal(rc.indices, rp.indices));
      coact.accumulate(rc);
      peer.accumulate(rp);
    }
    EXPECT_EQ(peer.stats().flat().numel(), E + 2 * E * d);
    EXPECT_EQ(coact.stats().flat().numel(), E + E * d + E * E);
    coact.apply_gravity(0);
    peer.apply_gravity(0);
    EXPECT_GT((coact.keys() - keys0).abs().max().item<float>(), 1e-3);  // the keys did move
    expect_near(peer.keys(), coact.keys(), 1e-6);
    expect_near(peer.usage(), coact.usage(), 0);
  }
}

TEST(Gravity, PercentileDecayReachesExpertsTiedAtTheBottom) {
  // Six of ten experts never selected: their usage ties at 0, which is also the 10th
  // percentile. They are the ones decay exists for, so all six decay; the used four do not.
  const int64_t E = 10, d = 3;
  auto keys = torch::ones({E, d});
  auto usage = torch::zeros({E});
  auto n = torch::tensor({0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 4.f, 4.f, 4.f, 4.f});
  GravityOptions g;
  g.use_alpha = g.use_beta = g.use_repulsion = false;
  g.delta = 0.5;
  auto decayed = knowledge_gravity(keys, usage, n, torch::zeros({E, d}), torch::zeros({E, d}), 2, g);
  auto expected = torch::tensor({1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, torch::kBool);
  EXPECT_TRUE(torch::equal(decayed, expected)) << decayed;
  expect_near(keys.select(1, 0), torch::where(expected, 0.5f, 1.f));
  // All usages equal: nobody is below anybody, nothing decays.
  auto flat_usage = torch::ones({E});
  auto none = knowledge_gravity(keys, flat_usage, torch::full({E}, 2.f), torch::zeros({E, d}),
                                torch::zeros({E, d}), 2, g);
  EXPECT_FALSE(none.any().item<bool>());
}
