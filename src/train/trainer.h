#pragma once
// The training loop (docs/design.md §3, §4, §8): micro-batches (forward, backward) -> gradient
// reduce -> clip -> AdamW -> the model's after-step update (one allreduce of routing statistics,
// Knowledge Gravity, MoE bias); periodic eval, metrics, checkpoints, progress.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "common/jsonl.h"
#include "common/tensorboard.h"
#include "data/batch_sampler.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "parallel/gradient_allreduce.h"
#include "parallel/parallel_state.h"
#include "src/model/transformer.h"
#include "src/train/evaluator.h"
#include "src/train/options.h"

namespace some::train {

struct TrainSummary {
  int64_t steps = 0;
  int64_t tokens = 0;
  double train_loss = 0, val_loss = 0, val_ppl = 0, unigram_ppl = 0;
  double tokens_per_s = 0, elapsed_s = 0;
  bool stopped_by_time = false;
  bool preempted = false;            // stopped by SIGTERM / SIGUSR1 after a checkpoint
  std::string checkpoint;            // the last checkpoint written (empty: none)
};

// Seconds spent in each phase of the latest step (for the benchmark).
struct StepTimes {
  double forward = 0, backward = 0, grad_allreduce = 0, optimizer = 0, key_update = 0;
};

class Trainer {
 public:
  // run_dir may be empty (no files written: tests and benchmarks).
  Trainer(model::Transformer model, OptimOptions optim, TrainOptions train,
          const data::DatasetMeta& data, std::string run_dir, parallel::ParallelState& parallel,
          ParallelOptions parallel_opts = {});

  TrainSummary run();                 // the whole loop, with evals, metrics and checkpoints
  double train_step(int64_t step);    // one optimizer step; returns the mean loss
  // Restores everything a checkpoint holds (weights, this rank's experts, key stores, AdamW
  // moments, RNG) at any W and P; run() then continues after its step. Returns that step.
  int64_t resume(const std::string& checkpoint_dir, bool verify = true);
  // AdamW state for a run that starts from another run's weights (model.init_optimizer), by
  // checkpoint names: optim.exp_avg.<name>, optim.exp_avg_sq.<name>, optim.step.<name>. Tensors
  // it lacks keep a fresh state; the run itself still starts at step 0.
  void init_optimizer_state(const std::map<std::string, torch::Tensor>& state);
  // Writes RUN/checkpoints/step_XXXXXXXX (collective). Returns its directory.
  std::string save_checkpoint(int64_t step, const std::string& reason);
  // The resolved config recorded in every checkpoint's manifest.
  void set_config_text(std::string toml) { config_text_ = std::move(toml); }
  const StepTimes& last_step_times() const { return times_; }
  model::Transformer& model() { return model_; }
  // What this rank writes into a checkpoint: rank 0 the replicated state (weights, key stores,
  // optimizer moments, RNG), the ranks of the first data-parallel replica their experts.
  std::map<std::string, torch::Tensor> checkpoint_tensors();
  // Compares a checksum of every key store across ranks; a divergence is an Error naming the
  // layer and the rank (collective).
  void check_key_stores(int64_t step);
  Evaluator& evaluator() { return *evaluator_; }

 private:
  model::Transformer model_;
  OptimOptions optim_;
  TrainOptions train_;
  std::string run_dir_;
  parallel::ParallelState& parallel_;
  ParallelOptions parallel_opts_;
  torch::Device device_;
  bool autocast_bf16_;               // train.dtype = "bfloat16", parsed once
  data::TokenSplit train_split_;
  data::BatchSampler sampler_;
  std::unique_ptr<Evaluator> evaluator_;
  std::optional<data::Tokenizer> tokenizer_;  // for the eval samples
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<torch::Tensor> params_;
  std::vector<std::pair<std::string, torch::Tensor>> named_params_;  // trainable, by global name
  std::string config_text_;
  std::string expert_library_;       // checkpoint_experts = once: the library written by this process
  int64_t start_step_ = 0;           // the step a resumed run continues after
  std::string resumed_from_;         // its checkpoint directory
  double elapsed_before_ = 0;        // training seconds of earlier segments of a resumed run
  std::chrono::steady_clock::time_point run_start_ = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> replicated_params_, expert_params_;  // trainable experts: MoE / hash baselines
  std::unique_ptr<parallel::GradientAllreduce> grad_allreduce_, expert_grad_allreduce_;
  JsonLines metrics_;
  TensorBoardWriter tb_;             // rank 0 of a run with a directory; inactive elsewhere
  StepTimes times_;
  double last_grad_norm_ = 0;
  int64_t last_dropped_slots_ = 0;  // capacity drops of the latest log step, all layers and ranks
  nlohmann::json pending_routing_;  // routing of the latest log step's batch
  std::vector<double> last_ffn_out_ratio_;  // per block, the latest log step's (StepRouting)

  torch::Tensor micro_batch(int64_t step, int64_t index) const;  // (B, T+1) on device
  nlohmann::json train_routing_json(const model::StepRouting& routing);
  void finish_expert_gradients();  // averages trainable experts' gradients over their replicas
  double clip_gradients();         // returns the global gradient norm before clipping
  // The AdamW moments and step of every trainable parameter (`optim.exp_avg.<name>`, ...),
  // created empty (step 0, zeros) where the optimizer has none yet.
  std::map<std::string, torch::Tensor> optimizer_tensors();
  void log_metrics(const nlohmann::json& line);  // metrics.jsonl and TensorBoard (rank 0)
  void keep_metrics_until(int64_t step);  // a resumed run drops lines logged after its checkpoint
  void log_step(int64_t step, double loss, double lr, double tok_s, double elapsed,
                const nlohmann::json& routing);
  EvalResult evaluate_and_log(int64_t step, double loss, double lr, double tok_s, double elapsed);
};

// Enables bf16 autocast on `device` for its lifetime when `enabled`.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, bool enabled);
  ~AutocastGuard();

 private:
  c10::DeviceType type_;
  bool previous_;
};

}  // namespace some::train
