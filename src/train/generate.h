#pragma once
// Autoregressive sampling from a trained model: temperature, top-k, fixed seed; optionally with
// keys that adapt while reading (adapt.h).
#include <cstdint>
#include <vector>

#include "src/model/transformer.h"
#include "src/train/adapt.h"

namespace some::train {

struct SampleOptions {
  int64_t max_new_tokens = 200;
  double temperature = 0.8;  // 0 = greedy
  int64_t top_k = 40;        // 0 = full distribution
  uint64_t seed = 1;
  int64_t stop_token = -1;   // stop early when sampled (e.g. EOS); -1 = never
};

// Every token re-runs the window of the last max_seq_len tokens (no cache). With `adapter` the
// prompt (its last max_seq_len tokens) is read first and makes one Knowledge Gravity update
// before the first token is sampled; then each generated token is read once, by the forward
// that first sees it as input (its routing with the keys of that moment), and every
// adapter's `every` such tokens make one update. The last sampled token is never read;
// tokens read after the last update make one more at the end.
std::vector<int32_t> sample(model::Transformer& model, std::vector<int32_t> prompt,
                            const SampleOptions& opts, torch::Device device, OnlineAdapter* adapter = nullptr);

}  // namespace some::train
