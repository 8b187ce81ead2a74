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
#include "common/progress.h"
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

// Seconds spent in each phase of a step (for the benchmark).
struct StepTimes {
  double forward = 0, backward = 0, grad_allreduce = 0, optimizer = 0, key_update = 0;
};

// What one optimizer step produced: everything run() logs about it.
struct StepResult {
  double loss = 0;       // mean LM loss over the global batch (without the MoE auxiliary loss)
  double lr = 0;         // the learning rate the step used
  double grad_norm = 0;  // global gradient norm before clipping
  StepTimes times;
  // The routing of the step's batch (loads, keys before the update, dropped slots, ffn_out_ratio),
  // gathered on log steps only (it costs host reads): step % log_every == 0 or the last step.
  std::optional<model::StepRouting> routing;
};

class Trainer {
 public:
  // run_dir may be empty (no files written: tests and benchmarks).
  Trainer(model::Transformer model, OptimOptions optim, TrainOptions train,
          const data::DatasetMeta& data, std::string run_dir, parallel::ParallelState& parallel,
          ParallelOptions parallel_opts = {});

  TrainSummary run();                 // the whole loop, with evals, metrics and checkpoints
  StepResult train_step(int64_t step);  // one optimizer step
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
  bool autocast_bf16_;               // train.dtype = bfloat16
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

  // The run's decisions that every rank must take at the same step.
  struct Control {
    bool stop_signal = false;     // any rank received SIGTERM / SIGUSR1
    bool checkpoint_due = false;  // train.checkpoint_minutes passed (rank 0's clock)
    bool out_of_time = false;     // train.max_minutes passed (rank 0's clock)
  };
  Control agree_on_control(double elapsed, std::chrono::steady_clock::time_point last_checkpoint);  // collective
  void log_forecast(int64_t step, double elapsed, const Progress& progress) const;
  torch::Tensor micro_batch(int64_t step, int64_t index) const;  // (B, T+1) on device
  double lr_at(int64_t step) const;    // the schedule (lr_schedule.h) at `step`, counted from 1
  int64_t tokens_per_step() const { return train_.global_batch * train_.seq_len; }
  void finish_expert_gradients();  // averages trainable experts' gradients over their replicas
  double clip_gradients();         // returns the global gradient norm before clipping
  // The AdamW moments and step of every trainable parameter (`optim.exp_avg.<name>`, ...),
  // created empty (step 0, zeros) where the optimizer has none yet.
  std::map<std::string, torch::Tensor> optimizer_tensors();
  void log_metrics(const nlohmann::json& line);  // metrics.jsonl and TensorBoard (rank 0)
  void keep_metrics_until(int64_t step);  // a resumed run drops lines logged after its checkpoint
  void log_step(int64_t step, const StepResult& result, double tok_s, double elapsed);
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
