// The Trainer's reporting (docs/design.md §8, §9): metrics lines (metrics.jsonl and TensorBoard), the
// routing of the training batch, evaluation with its sample and analytics file, and the
// cross-rank key-store check. The step and the loop are trainer.cpp.
#include <fmt/format.h>

#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/tensorboard.h"
#include "src/model/key_store.h"
#include "src/model/some_layer.h"
#include "src/train/device.h"
#include "src/train/generate.h"
#include "src/train/trainer.h"

namespace some::train {

void Trainer::check_key_stores(int64_t step) {
  auto layers = model_->some_layers();
  auto indices = model_->some_layer_indices();
  for (size_t l = 0; l < layers.size(); ++l) {
    auto* store = layers[l]->key_store();
    // Exact checksums: every rank must hold bit-identical keys and usage.
    auto mine = torch::stack({store->keys().to(torch::kFloat64).sum(), store->keys().to(torch::kFloat64).abs().sum(),
                              store->usage().to(torch::kFloat64).sum()}).cpu();  // (3,)
    auto all = parallel_.world().allgather(mine);                                 // (W, 3)
    for (int r = 0; r < parallel_.world_size(); ++r) {
      SOME_REQUIRE(torch::equal(all[r], all[0]), Error,
                   "key store of layer {} diverged at step {}: rank {} has checksum ({:.17g}, {:.17g}, {:.17g}), "
                   "rank 0 has ({:.17g}, {:.17g}, {:.17g})",
                   indices[l], step, r, all[r][0].item<double>(), all[r][1].item<double>(), all[r][2].item<double>(),
                   all[0][0].item<double>(), all[0][1].item<double>(), all[0][2].item<double>());
    }
  }
}

void Trainer::log_metrics(const nlohmann::json& line) {
  metrics_.write(line);
  write_metrics(tb_, line);  // the same line as TensorBoard events (RUN/tb)
}

void Trainer::log_step(int64_t step, const StepResult& result, double tok_s, double elapsed) {
  nlohmann::json j = {{"step", step},       {"tokens", step * tokens_per_step()}, {"loss", result.loss},
                      {"lr", result.lr},    {"grad_norm", result.grad_norm},      {"tokens_per_s", tok_s},
                      {"elapsed_s", elapsed}};
  if (result.routing) {
    const auto& routing = *result.routing;
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : routing.layers) {
      layers.push_back(summarize_routing(l.layer, l.counts, l.keys, l.mean_top1_score).to_json());
    }
    if (!layers.empty()) j["routing"] = layers;
    // ||FFN output|| / ||residual|| per block, dense or routed (docs/design.md §9).
    if (!routing.ffn_out_ratio.empty()) j["ffn_out_ratio"] = routing.ffn_out_ratio;
    if (model_->options().capacity_factor > 0) j["dropped_slots"] = routing.dropped_slots;
  }
  if (device_.is_cuda()) j["peak_memory_gib"] = static_cast<double>(peak_memory_bytes(device_)) / (1 << 30);
  j["rss_gib"] = static_cast<double>(rss_bytes()) / (1 << 30);  // host memory now: it must not grow with steps
  log_metrics(j);
}

EvalResult Trainer::evaluate_and_log(int64_t step, double loss, double lr, double tok_s, double elapsed) {
  auto result = evaluator_->run(model_);
  nlohmann::json routing = nlohmann::json::array();
  for (auto& r : result.routing) routing.push_back(r.to_json());
  nlohmann::json j = {{"event", "eval"},   {"step", step},
                      {"tokens", step * tokens_per_step()},
                      {"loss", loss},      {"lr", lr},
                      {"tokens_per_s", tok_s}, {"elapsed_s", elapsed},
                      {"val_loss", result.loss}, {"val_ppl", result.ppl},
                      {"unigram_ppl", evaluator_->unigram_ppl()}, {"routing", routing}};
  auto log = log::get("train");
  log->info("eval step {}: val loss {:.4f} | val PPL {:.2f} (unigram PPL {:.2f})", step, result.loss,
            result.ppl, evaluator_->unigram_ppl());
  if (tokenizer_) {
    // Low perplexity with incoherent text is a failure the numbers alone hide. Every rank
    // samples (the expert exchange is collective), from a fixed seed: the same text everywhere.
    SampleOptions opts;
    opts.max_new_tokens = train_.eval_sample_tokens;
    auto prompt = tokenizer_->encode(train_.sample_prompt);
    if (prompt.empty()) prompt.push_back(tokenizer_->eos_id());
    const auto text = train_.sample_prompt + " " + tokenizer_->decode(sample(model_, prompt, opts, device_));
    j["sample"] = text;
    log->info("  sample: {}", text);
  }
  log_metrics(j);
  for (auto& r : result.routing) {
    log->info("  layer {}: gini {:.3f} | entropy {:.3f} ({:.2f} of max) | dead {}{}{}", r.layer, r.gini, r.entropy,
              r.entropy_norm, r.dead_experts,
              r.has_keys ? fmt::format(" | top-1 score {:.3f} | key cos {:.3f}", r.top1_score, r.key_cos) : "",
              r.churn ? fmt::format(" | churn {:.3f}", *r.churn) : "");
  }
  if (!run_dir_.empty() && parallel_.rank() == 0 && !result.routing.empty()) {
    Evaluator::write_analytics(fmt::format("{}/analytics/step_{:08d}.h5", run_dir_, step), model_, result);
  }
  return result;
}

}  // namespace some::train
