#pragma once
// Autoregressive sampling from a trained model: temperature, top-k, fixed seed.
#include <cstdint>
#include <vector>

#include "src/model/transformer.h"

namespace some::train {

struct SampleOptions {
  int64_t max_new_tokens = 200;
  double temperature = 0.8;  // 0 = greedy
  int64_t top_k = 40;        // 0 = full distribution
  uint64_t seed = 1;
  int64_t stop_token = -1;   // stop early when sampled (e.g. EOS); -1 = never
};

std::vector<int32_t> sample(model::Transformer& model, std::vector<int32_t> prompt,
                            const SampleOptions& opts, torch::Device device);

}  // namespace some::train
