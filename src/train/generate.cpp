#include "src/train/generate.h"

#include "common/check.h"
#include "common/errors.h"

namespace some::train {

std::vector<int32_t> sample(model::Transformer& model, std::vector<int32_t> tokens,
                            const SampleOptions& opts, torch::Device device, OnlineAdapter* adapter) {
  SOME_REQUIRE(!tokens.empty(), Error, "sampling needs a prompt of at least one token");
  torch::NoGradGuard no_grad;
  model->eval();
  model->set_collect_stats(false);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
  const auto context = model->options().max_seq_len;
  const size_t prompt_len = tokens.size();
  // Logits (V,) of the next token after the last `context` tokens.
  auto next_logits = [&] {
    const auto start = tokens.size() > static_cast<size_t>(context) ? tokens.size() - context : 0;
    std::vector<int64_t> window(tokens.begin() + static_cast<int64_t>(start), tokens.end());
    auto x = torch::tensor(window, torch::kInt64).unsqueeze(0).to(device);     // (1, T)
    return model->forward(x).select(1, -1).squeeze(0).to(torch::kFloat32).cpu();  // (V,)
  };
  if (adapter) {  // the prompt is read first: its statistics move the keys before anything is sampled
    next_logits();
    adapter->read();
    adapter->flush();
  }
  for (int64_t i = 0; i < opts.max_new_tokens; ++i) {
    auto logits = next_logits();
    if (adapter && i > 0) adapter->read(/*rows=*/1);  // the token sampled last, read for the first time
    int64_t next;
    if (opts.temperature <= 0) {
      next = logits.argmax().item<int64_t>();
    } else {
      logits = logits / opts.temperature;
      if (opts.top_k > 0 && opts.top_k < logits.size(0)) {
        auto kth = std::get<0>(logits.topk(opts.top_k)).select(0, opts.top_k - 1);
        logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
      }
      next = torch::multinomial(torch::softmax(logits, 0), 1, false, gen).item<int64_t>();
    }
    if (next == opts.stop_token) break;
    tokens.push_back(static_cast<int32_t>(next));
  }
  if (adapter) adapter->flush();
  return {tokens.begin() + static_cast<int64_t>(prompt_len), tokens.end()};
}

}  // namespace some::train
