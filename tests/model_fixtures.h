#pragma once
// Small models and trainers for the C++ tests, from designated initialisers: a test names the
// shape it needs and takes the library's defaults for everything else.
//   auto o = some::test::model_options({.vocab = 50, .d_model = 32, .n_layers = 4, .num_experts = 8});
//   o.router.temperature = 0.3;  // options beyond the shape: set them on the result
//   auto t = some::test::train_options({.log_every = 5});
#include <cstdint>

#include "src/model/options.h"
#include "src/train/options.h"

namespace some::test {

struct ModelShape {
  int64_t vocab = 50;
  int64_t d_model = 16;
  int64_t n_layers = 2;
  int64_t n_heads = 2;
  int64_t seq_len = 16;  // ModelOptions::max_seq_len
  int64_t num_experts = 6;
  int64_t top_k = 2;
  int64_t d_expert = 8;
  model::FfnKind ffn = model::FfnKind::kSome;
};

inline model::ModelOptions model_options(const ModelShape& s) {
  model::ModelOptions o;
  o.vocab_size = s.vocab;
  o.d_model = s.d_model;
  o.n_layers = s.n_layers;
  o.n_heads = s.n_heads;
  o.max_seq_len = s.seq_len;
  o.num_experts = s.num_experts;
  o.top_k = s.top_k;
  o.d_expert = s.d_expert;
  o.ffn = s.ffn;
  return o;
}

// A trainer on the tiny dataset (tests/tiny_dataset.h): 8 sequences of 32 tokens per step in
// micro-batches of 4, 20 steps, one eval at the end on 2 micro-batches.
struct TrainShape {
  int64_t micro_batch = 4;
  int64_t global_batch = 8;
  int64_t seq_len = 32;
  int64_t max_steps = 20;
  int64_t log_every = 10;
  int64_t eval_every = 0;
  int64_t eval_batches = 2;
  int64_t eval_sample_tokens = 32;
};

inline train::TrainOptions train_options(const TrainShape& s) {
  train::TrainOptions t;
  t.micro_batch = s.micro_batch;
  t.global_batch = s.global_batch;
  t.seq_len = s.seq_len;
  t.max_steps = s.max_steps;
  t.log_every = s.log_every;
  t.eval_every = s.eval_every;
  t.eval_batches = s.eval_batches;
  t.eval_sample_tokens = s.eval_sample_tokens;
  return t;
}

}  // namespace some::test
