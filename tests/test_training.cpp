// The trainer end to end on a tiny prepared dataset: overfitting, frozen experts, gradient
// accumulation, statistics counted once per token, NaN stop, wall-clock budget.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "parallel/parallel_state.h"
#include "src/model/key_store.h"
#include "src/model/some_layer.h"
#include "src/model/transformer.h"
#include "src/train/trainer.h"
#include "tiny_dataset.h"
#include "model_fixtures.h"

using namespace some;

namespace {

model::ModelOptions tiny_model(int64_t vocab) {
  return test::model_options({.vocab = vocab, .d_model = 32, .seq_len = 32, .num_experts = 8, .d_expert = 16});
}

train::TrainOptions tiny_train() { return test::train_options({.log_every = 5}); }

struct Fixture {
  data::DatasetMeta meta = data::read_meta(test::tiny_dataset_dir());
  parallel::ParallelState parallel = parallel::ParallelState::single_process();
};

}  // namespace

TEST(Training, TinyModelOverfitsOneBatch) {
  torch::manual_seed(0);
  auto opts = tiny_model(64);
  model::Transformer model(opts);
  auto batch = torch::randint(0, 64, {4, 33}, torch::kLong);
  auto inputs = batch.narrow(1, 0, 32), targets = batch.narrow(1, 1, 32);
  std::vector<torch::Tensor> params = model->decay_parameters();
  for (auto& p : model->no_decay_parameters()) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-2).weight_decay(0));
  model->set_collect_stats(true);
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    opt.zero_grad();
    auto loss = model->loss(inputs, targets);
    loss.backward();
    opt.step();
    for (auto* layer : model->some_layers()) layer->some_router().store().apply_gravity(step);
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first / 5) << "first " << first << " last " << last;
}

TEST(Training, FrozenExpertsBitIdenticalAfter20StepsAndKeysMove) {
  Fixture f;
  model::Transformer model(tiny_model(f.meta.vocab_size));
  std::vector<torch::Tensor> experts_before, keys_before;
  for (auto* l : model->some_layers()) {
    experts_before.push_back(l->experts()->w_down.clone());
    experts_before.push_back(l->experts()->w_up.clone());
    keys_before.push_back(l->key_store()->keys().clone());
  }
  train::Trainer trainer(model, {}, tiny_train(), f.meta, "", f.parallel);
  for (int64_t step = 1; step <= 20; ++step) trainer.train_step(step);
  size_t i = 0, j = 0;
  for (auto* l : model->some_layers()) {
    EXPECT_TRUE(torch::equal(l->experts()->w_down, experts_before[i++]));
    EXPECT_TRUE(torch::equal(l->experts()->w_up, experts_before[i++]));
    EXPECT_FALSE(l->experts()->w_down.grad().defined());
    EXPECT_FALSE(l->experts()->w_up.grad().defined());
    EXPECT_FALSE(torch::equal(l->key_store()->keys(), keys_before[j++])) << "Knowledge Gravity moved no key";
  }
}

TEST(Training, GradientAccumulationMatchesOneBigMicroBatch) {
  Fixture f;
  auto run = [&](int64_t micro) {
    torch::manual_seed(5);
    model::Transformer model(tiny_model(f.meta.vocab_size));
    auto t = tiny_train();
    t.micro_batch = micro;
    train::Trainer trainer(model, {}, t, f.meta, "", f.parallel);
    std::vector<double> losses;
    for (int64_t step = 1; step <= 3; ++step) losses.push_back(trainer.train_step(step).loss);
    return std::make_pair(losses, model->some_layers()[0]->key_store()->keys().clone());
  };
  auto [one, keys_one] = run(8);
  auto [four, keys_four] = run(2);
  for (size_t s = 0; s < one.size(); ++s) EXPECT_NEAR(one[s], four[s], 1e-4 * std::abs(one[s])) << "step " << s + 1;
  EXPECT_TRUE(torch::allclose(keys_one, keys_four, 1e-4, 1e-5));
}

TEST(Training, EvaluationDoesNotFeedKnowledgeGravity) {
  Fixture f;
  model::Transformer model(tiny_model(f.meta.vocab_size));
  train::Trainer trainer(model, {}, tiny_train(), f.meta, "", f.parallel);
  trainer.train_step(1);
  trainer.evaluator().run(model);
  for (auto* l : model->some_layers()) EXPECT_EQ(l->some_router().store().stats().n().sum().item<float>(), 0.f);
}

TEST(Training, NonFiniteLossStopsWithTheStep) {
  Fixture f;
  model::Transformer model(tiny_model(f.meta.vocab_size));
  train::Trainer trainer(model, {}, tiny_train(), f.meta, "", f.parallel);
  trainer.train_step(1);
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["final_norm.weight"].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  try {
    trainer.train_step(2);
    FAIL() << "expected NumericError";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
  }
}

TEST(Training, RunHonoursMaxMinutesAndLearns) {
  Fixture f;
  model::Transformer model(tiny_model(f.meta.vocab_size));
  auto t = tiny_train();
  t.max_steps = 100000;
  t.max_minutes = 0.1;  // 6 s
  train::Trainer trainer(model, {}, t, f.meta, "", f.parallel);
  auto summary = trainer.run();
  EXPECT_TRUE(summary.stopped_by_time);
  EXPECT_LT(summary.steps, 100000);
  EXPECT_LT(summary.elapsed_s, 30.0);
  EXPECT_LT(summary.val_ppl, summary.unigram_ppl) << "the model learned nothing beyond unigrams";
}

TEST(Training, BFloat16AutocastTrainsAndKeepsKeysFp32) {
  Fixture f;
  auto first_loss = [&](train::Dtype dtype, model::Transformer& model) {
    auto t = tiny_train();
    t.dtype = dtype;
    train::Trainer trainer(model, {}, t, f.meta, "", f.parallel);
    double first = trainer.train_step(1).loss;
    for (int64_t step = 2; step <= 3; ++step) EXPECT_TRUE(std::isfinite(trainer.train_step(step).loss));
    return first;
  };
  torch::manual_seed(9);
  model::Transformer fp32(tiny_model(f.meta.vocab_size));
  torch::manual_seed(9);
  model::Transformer bf16(tiny_model(f.meta.vocab_size));
  double a = first_loss(train::Dtype::kFloat32, fp32), b = first_loss(train::Dtype::kBfloat16, bf16);
  EXPECT_NEAR(a, b, 0.02 * a);
  for (auto* l : bf16->some_layers()) {
    EXPECT_EQ(l->key_store()->keys().scalar_type(), torch::kFloat32);
    EXPECT_EQ(l->some_router().store().stats().flat().scalar_type(), torch::kFloat32);
  }
}

