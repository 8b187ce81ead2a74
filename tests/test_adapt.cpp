// Keys that adapt while reading (src/train/adapt.h, docs/design.md §3): only the SoME keys and
// usage move, the protocol is prequential, zero-strength gravity changes nothing, keys files
// round-trip and a file that does not fit is a named error, baselines are refused.
#include <filesystem>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "checkpoints/tensor_file.h"
#include "common/errors.h"
#include "common/h5.h"
#include "data/batch_sampler.h"
#include "parallel/parallel_state.h"
#include "src/model/key_store.h"
#include "src/model/routed_ffn.h"
#include "src/model/some_layer.h"
#include "src/model/transformer.h"
#include "src/train/adapt.h"
#include "src/train/evaluator.h"
#include "src/train/generate.h"
#include "tiny_dataset.h"
#include "model_fixtures.h"

using namespace some;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSeqLen = 32, kMicro = 4;

// Four blocks, SoME in blocks 1 and 3 and dense FFNs in 0 and 2 (routed_layers = every_other).
model::ModelOptions tiny_model(int64_t vocab) {
  auto o = test::model_options({.vocab = vocab, .d_model = 32, .n_layers = 4, .seq_len = kSeqLen, .num_experts = 8,
                                .d_expert = 16});
  o.routed_layers = model::RoutedLayers::kEveryOther;
  o.router.temperature = 0.3;
  o.gravity.alpha = 0.3;  // strong enough that a few updates move the routing
  return o;
}

struct Fixture {
  data::DatasetMeta meta = data::read_meta(test::tiny_dataset_dir());
  parallel::ParallelState parallel = parallel::ParallelState::single_process();

  model::Transformer model(const model::ModelOptions& o) { return model::Transformer(o); }
  model::Transformer model() { return model(tiny_model(meta.vocab_size)); }
  train::Evaluator evaluator(int64_t batches) {
    return train::Evaluator(data::TokenSplit(meta, "val"), kSeqLen, kMicro, batches, torch::kCPU, parallel);
  }
};

std::map<std::string, torch::Tensor> snapshot(model::Transformer& m) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, t] : m->state_tensors()) out.emplace(name, t.clone());
  return out;
}

bool is_key_store(const std::string& name) { return name.ends_with(".keys") || name.ends_with(".usage"); }

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("some-test-adapt-" + std::to_string(::getpid()) + "-" + name)).string();
}

}  // namespace

TEST(Adapt, MovesOnlyTheSoMEKeysAndUsage) {
  Fixture f;
  auto m = f.model();
  ASSERT_EQ(m->some_layer_indices(), (std::vector<int64_t>{1, 3}));
  const auto before = snapshot(m);
  train::OnlineAdapter adapter(m, {});
  f.evaluator(4).run(m, &adapter);
  EXPECT_EQ(adapter.updates(), 4);
  EXPECT_EQ(adapter.tokens_read(), 4 * kMicro * kSeqLen);
  int moved = 0;
  for (auto& [name, t] : m->state_tensors()) {
    if (is_key_store(name)) {
      moved += !torch::equal(t, before.at(name));
    } else {  // experts, query networks, attention, embeddings, dense FFNs, norms: bit-identical
      EXPECT_TRUE(torch::equal(t, before.at(name))) << name << " changed";
    }
  }
  EXPECT_EQ(moved, 4) << "the keys and usage of both SoME layers must move";
  for (auto* layer : m->some_layers()) {  // nothing left pending: the last read made an update
    EXPECT_EQ(layer->some_router().store().stats().n().sum().item<float>(), 0.f);
  }
}

TEST(Adapt, EachMicroBatchIsScoredWithTheKeysOfThoseBeforeIt) {
  Fixture f;
  // By hand: score batch 0 with the checkpoint's keys, one update from its routing, score batch 1.
  auto by_hand = f.model();
  data::TokenSplit split(f.meta, "val");
  data::EvalWindows windows(split, kSeqLen);
  auto batch = [&](int64_t first) {
    std::vector<int32_t> buf(kMicro * (kSeqLen + 1));
    windows.fill(first, kMicro, buf.data());
    return torch::from_blob(buf.data(), {kMicro, kSeqLen + 1}, torch::kInt32).to(torch::kInt64);
  };
  torch::NoGradGuard no_grad;
  by_hand->eval();
  train::OnlineAdapter manual(by_hand, {});
  auto b0 = batch(0), b1 = batch(kMicro);
  const double l0 = by_hand->loss(b0.narrow(1, 0, kSeqLen), b0.narrow(1, 1, kSeqLen)).item<double>();
  manual.read();
  const double l1 = by_hand->loss(b1.narrow(1, 0, kSeqLen), b1.narrow(1, 1, kSeqLen)).item<double>();

  auto adapted = f.model();
  train::OnlineAdapter adapter(adapted, {});
  const auto online = f.evaluator(2).run(adapted, &adapter);
  EXPECT_NEAR(online.loss, (l0 + l1) / 2, 1e-6);

  // The first micro-batch alone: exactly the unadapted eval (its own tokens moved nothing).
  auto plain = f.model(), first_only = f.model();
  train::OnlineAdapter one(first_only, {});
  EXPECT_EQ(f.evaluator(1).run(first_only, &one).loss, f.evaluator(1).run(plain).loss);
  EXPECT_NEAR(f.evaluator(1).run(plain).loss, l0, 1e-6);
  // And adaptation does change later scores (so the checks above can fail).
  EXPECT_NE(online.loss, f.evaluator(2).run(plain).loss);
}

TEST(Adapt, ZeroStrengthGravityGivesExactlyTheUnadaptedLoss) {
  Fixture f;
  auto o = tiny_model(f.meta.vocab_size);
  o.gravity.alpha = o.gravity.beta = o.gravity.delta = o.gravity.repulsion = 0;
  auto plain = f.model(o), adapted = f.model(o);
  const auto expected = f.evaluator(5).run(plain);
  train::OnlineAdapter adapter(adapted, {});
  const auto got = f.evaluator(5).run(adapted, &adapter);
  EXPECT_EQ(adapter.updates(), 5);
  EXPECT_EQ(got.loss, expected.loss);
  EXPECT_EQ(got.ppl, expected.ppl);
}

TEST(Adapt, AdaptEveryGroupsMicroBatchesIntoOneUpdate) {
  Fixture f;
  auto m = f.model();
  train::OnlineAdapter adapter(m, {.every = 2});
  f.evaluator(5).run(m, &adapter);
  EXPECT_EQ(adapter.updates(), 3);  // after batches 2 and 4, and the last one at the end
  EXPECT_THROW(train::OnlineAdapter(m, {.every = 0}), ConfigError);
}

TEST(Adapt, NeverReinitialisesKeysFromData) {
  // router.key_init = data: a loaded model's key store still waits to initialise from queries;
  // adapting must move the keys by Knowledge Gravity (here of zero strength: not at all).
  Fixture f;
  auto o = tiny_model(f.meta.vocab_size);
  o.router.key_init = model::KeyInit::kData;
  o.gravity.alpha = o.gravity.beta = o.gravity.delta = 0;
  auto m = f.model(o);
  const auto before = snapshot(m);
  train::OnlineAdapter adapter(m, {});
  f.evaluator(3).run(m, &adapter);
  for (auto& [name, t] : m->state_tensors()) {
    if (name.ends_with(".keys")) EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
  }
}

TEST(Adapt, DeadKeyRestartIsDeterministic) {
  Fixture f;
  auto o = tiny_model(f.meta.vocab_size);
  o.gravity.restart_below = 0.9;
  o.gravity.ema_decay = 0.5;  // usage falls fast: restarts happen within a few updates
  auto keys_after = [&](uint64_t seed) {
    auto m = f.model(o);
    train::OnlineAdapter adapter(m, {.every = 1, .seed = seed});
    f.evaluator(4).run(m, &adapter);
    return std::make_pair(m->some_layers()[0]->key_store()->keys().clone(),
                          m->some_layers()[1]->key_store()->keys().clone());
  };
  auto [a0, a1] = keys_after(77);
  auto [b0, b1] = keys_after(77);
  EXPECT_TRUE(torch::equal(a0, b0));
  EXPECT_TRUE(torch::equal(a1, b1));
  // Restarts happened, and drew from the seed (train.seed): another seed, other keys.
  auto [c0, c1] = keys_after(78);
  EXPECT_FALSE(torch::equal(a0, c0) && torch::equal(a1, c1));
}

TEST(Adapt, SavedKeysLoadBackIntoAFreshModel) {
  Fixture f;
  auto adapted = f.model();
  train::OnlineAdapter adapter(adapted, {});
  f.evaluator(3).run(adapted, &adapter);
  const auto path = temp_path("roundtrip.h5");
  train::save_keys(path, adapted);
  {
    auto file = h5::open_file(path);  // the analytics files' names, SoME layers only
    for (std::string name : {"layers/1/keys", "layers/1/usage", "layers/3/keys", "layers/3/usage"}) {
      EXPECT_TRUE(h5::has_link(file, name)) << name;
    }
    EXPECT_FALSE(h5::has_link(file, "layers/0"));
  }

  auto fresh = f.model();
  EXPECT_FALSE(torch::equal(fresh->some_layers()[0]->key_store()->keys(), adapted->some_layers()[0]->key_store()->keys()));
  train::load_keys(path, fresh);
  for (size_t l = 0; l < 2; ++l) {
    auto* a = adapted->some_layers()[l]->key_store();
    auto* b = fresh->some_layers()[l]->key_store();
    EXPECT_TRUE(torch::equal(a->keys(), b->keys()));
    EXPECT_TRUE(torch::equal(a->usage(), b->usage()));
  }
  // The loaded keys route: the same eval as the adapted model's, without adapting.
  EXPECT_EQ(f.evaluator(2).run(fresh).loss, f.evaluator(2).run(adapted).loss);
  // The same names as an analytics file: one loads too.
  const auto analytics = temp_path("analytics.h5");
  auto result = f.evaluator(1).run(adapted);
  train::Evaluator::write_analytics(analytics, adapted, result);
  auto again = f.model();
  train::load_keys(analytics, again);
  EXPECT_TRUE(torch::equal(again->some_layers()[1]->key_store()->keys(), adapted->some_layers()[1]->key_store()->keys()));
  fs::remove(path);
  fs::remove(analytics);
}

TEST(Adapt, AKeysFileThatDoesNotFitNamesFileAndTensor) {
  Fixture f;
  auto m = f.model();
  const auto before = snapshot(m);
  auto expect_error = [&](const checkpoints::TensorMap& tensors, const std::string& tensor, const std::string& why) {
    const auto path = temp_path("bad.h5");
    checkpoints::write_tensors(path, tensors);
    try {
      train::load_keys(path, m);
      ADD_FAILURE() << "no error for " << why;
    } catch (const DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(tensor), std::string::npos) << msg;
    }
    fs::remove(path);
  };
  auto keys = torch::randn({8, 32}), usage = torch::ones({8});
  expect_error({{"layers/1/keys", keys}, {"layers/1/usage", usage}, {"layers/3/keys", torch::randn({16, 32})},
                {"layers/3/usage", usage}},
               "layers/3/keys", "16 keys for 8 experts");
  expect_error({{"layers/1/keys", keys}, {"layers/1/usage", usage}, {"layers/3/keys", keys}}, "layers/3/usage",
               "a missing usage");
  expect_error({{"layers/1/keys", keys}, {"layers/1/usage", usage}, {"layers/3/keys", keys},
                {"layers/3/usage", usage}, {"layers/2/keys", keys}},
               "layers/2/keys", "keys of a dense block");
  // A refused file changes nothing.
  for (auto& [name, t] : m->state_tensors()) EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
  EXPECT_THROW(train::load_keys(temp_path("absent.h5"), m), DataError);
}

TEST(Adapt, BaselinesAreRefusedNamingModelFfn) {
  Fixture f;
  for (std::string ffn : {"dense", "moe", "hash"}) {
    auto o = tiny_model(f.meta.vocab_size);
    o.ffn = parse_choice<model::FfnKind>("model.ffn", ffn);
    auto m = f.model(o);
    try {
      train::OnlineAdapter adapter(m, {});
      ADD_FAILURE() << "--adapt accepted model.ffn = " << ffn;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("model.ffn = '" + ffn + "'"), std::string::npos) << e.what();
    }
    EXPECT_THROW(train::save_keys(temp_path("x.h5"), m), ConfigError);
  }
  auto o = tiny_model(f.meta.vocab_size);
  o.router.freeze_keys = true;
  auto frozen = f.model(o);
  EXPECT_THROW(train::OnlineAdapter(frozen, {}), ConfigError);
}

TEST(Adapt, SaveKeysRefusesTheCheckpointDirectory) {
  Fixture f;
  auto m = f.model();
  const auto dir = temp_path("ckpt");
  fs::create_directories(dir);
  EXPECT_THROW(train::save_keys(dir + "/keys.h5", m, dir), ConfigError);
  EXPECT_THROW(train::check_keys_path(dir + "/sub/../keys.h5", dir), ConfigError);
  EXPECT_TRUE(fs::is_empty(dir));
  EXPECT_NO_THROW(train::check_keys_path(dir + "-other/keys.h5", dir));  // a sibling is not inside
  // A run's step directory protects the run's whole checkpoints folder.
  const auto step = dir + "/run/checkpoints/step_00000020";
  fs::create_directories(step);
  EXPECT_THROW(train::check_keys_path(dir + "/run/checkpoints/keys.h5", step), ConfigError);
  EXPECT_NO_THROW(train::check_keys_path(dir + "/run/keys.h5", step));
  fs::remove_all(dir);
}

TEST(Adapt, GenerationReadsThePromptThenEveryNGeneratedTokens) {
  Fixture f;
  const std::vector<int32_t> prompt = {5, 9, 12, 7, 30};
  train::SampleOptions s;
  s.max_new_tokens = 9;
  s.temperature = 0;
  auto m = f.model();
  train::OnlineAdapter adapter(m, {.every = 4});
  const auto before = snapshot(m);
  auto out = train::sample(m, prompt, s, torch::kCPU, &adapter);
  ASSERT_EQ(out.size(), 9u);
  // The prompt (one update), generated tokens 1..8 read once each (updates after 4 and 8); the
  // ninth is never read.
  EXPECT_EQ(adapter.updates(), 3);
  EXPECT_EQ(adapter.tokens_read(), 5 + 8);
  for (auto& [name, t] : m->state_tensors()) {
    if (!is_key_store(name)) EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
  }
  // Zero-strength gravity: exactly the unadapted text.
  auto o = tiny_model(f.meta.vocab_size);
  o.gravity.alpha = o.gravity.beta = o.gravity.delta = 0;
  auto plain = f.model(o), zero = f.model(o);
  train::OnlineAdapter none(zero, {.every = 1});
  s.temperature = 0.8;
  s.max_new_tokens = 20;
  EXPECT_EQ(train::sample(zero, prompt, s, torch::kCPU, &none), train::sample(plain, prompt, s, torch::kCPU));
  EXPECT_EQ(none.updates(), 1 + 19);
}
