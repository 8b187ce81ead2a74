#include "src/train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include <ATen/autocast_mode.h>

#include "common/check.h"
#include "common/errors.h"
#include "common/fault_injection.h"
#include "common/logging.h"
#include "common/progress.h"
#include "common/stop_signal.h"
#include "src/model/tensor_names.h"
#include "src/train/device.h"
#include "src/train/lr_schedule.h"

namespace some::train {

using Clock = std::chrono::steady_clock;

namespace {
// The run's forecast line comes after this many steps (the first ones include warm-up).
constexpr int64_t kForecastAfterSteps = 10;

// Training throughput between log lines; evals and checkpoints restart it (they are not training).
struct ThroughputWindow {
  Clock::time_point start = Clock::now();
  int64_t steps = 0;
  void restart() {
    start = Clock::now();
    steps = 0;
  }
  double rate(int64_t tokens_per_step) {  // tokens/s since the last restart, then restarts
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double out = static_cast<double>(steps * tokens_per_step) / std::max(seconds, 1e-9);
    restart();
    return out;
  }
};
}  // namespace

AutocastGuard::AutocastGuard(torch::Device device, bool enabled) : type_(device.type()) {
  previous_ = at::autocast::is_autocast_enabled(type_);
  if (enabled) {
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
    at::autocast::set_autocast_enabled(type_, true);
  }
}

AutocastGuard::~AutocastGuard() {
  at::autocast::set_autocast_enabled(type_, previous_);
  if (!previous_) at::autocast::clear_cache();
}

Trainer::Trainer(model::Transformer model, OptimOptions optim, TrainOptions train,
                 const data::DatasetMeta& data, std::string run_dir,
                 parallel::ParallelState& parallel, ParallelOptions parallel_opts)
    : model_(std::move(model)), optim_(optim), train_(std::move(train)), run_dir_(std::move(run_dir)),
      parallel_(parallel), parallel_opts_(parallel_opts),
      device_(train_.device == DeviceKind::kCuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(train_.cuda_index))
                                                 : torch::Device(torch::kCPU)),
      autocast_bf16_(train_.dtype == Dtype::kBfloat16),
      train_split_(data, "train"), sampler_(train_split_, train_.seq_len, train_.seed) {
  const auto W = parallel_.world_size();
  SOME_REQUIRE(train_.global_batch % W == 0 && (train_.global_batch / W) % train_.micro_batch == 0, ConfigError,
               "train.global_batch = {} must split into {} ranks x whole micro-batches of train.micro_batch = {}",
               train_.global_batch, W, train_.micro_batch);
  // LibTorch seeds its default generators randomly per process; a run is reproducible (and a
  // resumed one identical) only from a fixed seed.
  torch::manual_seed(train_.seed);
  model_->to(device_);
  // Replicated state starts identical on every rank (as DDP does): rank 0's dense weights, keys
  // and usage. Experts are per-rank shards and stay as they are.
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : model_->state_tensors()) {
      if (!model::names::is_expert(name)) parallel_.world().broadcast(tensor, 0);
    }
  }
  if (train_.eval_sample_tokens > 0) tokenizer_.emplace(data::Tokenizer::load(data.tokenizer_path()));
  evaluator_ = std::make_unique<Evaluator>(data::TokenSplit(data, "val"), train_.seq_len,
                                           train_.micro_batch, train_.eval_batches, device_, parallel_);
  // AdamW on the trainable parameters only (frozen experts and keys are buffers); weight decay
  // on matrices only.
  auto decay = model_->decay_parameters(), no_decay = model_->no_decay_parameters();
  auto adamw = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(optim_.lr).betas({optim_.beta1, optim_.beta2}).eps(optim_.eps).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, adamw(optim_.weight_decay));
  groups.emplace_back(no_decay, adamw(0.0));
  optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups));
  params_ = decay;
  params_.insert(params_.end(), no_decay.begin(), no_decay.end());
  for (auto& p : model_->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    named_params_.emplace_back(p.key(), p.value());
    (model::names::is_expert(p.key()) ? expert_params_ : replicated_params_).push_back(p.value());
  }
  // Replicated parameters: gradients averaged over all W ranks. Trainable experts (the MoE and
  // hash baselines) over the W/P replicas of each expert; see finish_expert_gradients().
  grad_allreduce_ = std::make_unique<parallel::GradientAllreduce>(replicated_params_, parallel_.world(),
                                                                  parallel_opts_.overlap_grad_allreduce);
  if (!expert_params_.empty()) {
    expert_grad_allreduce_ = std::make_unique<parallel::GradientAllreduce>(
        expert_params_, parallel_.expert_replicas(), parallel_opts_.overlap_grad_allreduce);
  }
  if (!run_dir_.empty() && parallel_.rank() == 0) {
    metrics_ = JsonLines(run_dir_ + "/metrics.jsonl");
    tb_ = TensorBoardWriter(run_dir_ + "/tb");
    std::filesystem::create_directories(run_dir_ + "/analytics");
  }
}

torch::Tensor Trainer::micro_batch(int64_t step, int64_t index) const {
  // This rank's contiguous slice of the global batch (docs/design.md §5), then micro-batch `index` of it.
  const auto per_rank = train_.global_batch / parallel_.world_size();
  const auto first = parallel_.rank() * per_rank + index * train_.micro_batch;
  // Filled in pinned host memory on CUDA and copied without blocking: the host goes on queueing
  // the micro-batch's kernels while its tokens travel.
  auto host = torch::empty({train_.micro_batch, train_.seq_len + 1},
                           torch::dtype(torch::kInt32).pinned_memory(device_.is_cuda()));
  sampler_.fill(step, train_.global_batch, first, train_.micro_batch, host.data_ptr<int32_t>());
  return host.to(device_, torch::kInt64, /*non_blocking=*/true);                  // (B, T+1)
}

double Trainer::lr_at(int64_t step) const {
  return learning_rate(step, optim_.warmup_steps, train_.max_steps, optim_.lr, optim_.min_lr_ratio);
}

StepResult Trainer::train_step(int64_t step) {
  // ---------------------------- TRAINING STEP BEGIN ----------------------------
  StepResult result;
  result.lr = lr_at(step);
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(result.lr);
  }
  model_->train();
  model_->set_collect_stats(true);  // every training token feeds Knowledge Gravity once
  optimizer_->zero_grad();
  auto& times = result.times;
  // A phase boundary: the host clock, after the device has caught up when timing is synchronised.
  auto now = [&] {
    if (train_.synchronize_phases) synchronize(device_);
    return Clock::now();
  };
  const auto n_micro = train_.global_batch / parallel_.world_size() / train_.micro_batch;
  std::vector<torch::Tensor> losses;  // kept on the device: one host sync per step, not per micro-batch
  for (int64_t m = 0; m < n_micro; ++m) {
    auto batch = micro_batch(step, m);                                        // (B, T+1)
    auto t0 = now();
    torch::Tensor loss, objective;
    {
      AutocastGuard autocast(device_, autocast_bf16_);
      loss = model_->loss(batch.narrow(1, 0, train_.seq_len), batch.narrow(1, 1, train_.seq_len));
      // The MoE baseline's balancing loss is optimised but not reported as the LM loss.
      auto aux = model_->aux_loss();
      objective = aux.defined() ? loss + aux : loss;
    }
    auto t1 = now();
    if (m == n_micro - 1) {  // its gradients are final: buckets may start during it
      grad_allreduce_->expect_final_backward();
      if (expert_grad_allreduce_) expert_grad_allreduce_->expect_final_backward();
    }
    (objective / static_cast<double>(n_micro)).backward();
    times.forward += std::chrono::duration<double>(t1 - t0).count();
    times.backward += std::chrono::duration<double>(now() - t1).count();
    losses.push_back(loss.detach());
  }
  model_->set_collect_stats(false);
  // Mean over ranks of each micro-batch's loss: every rank sees the same values, so a
  // non-finite loss stops all ranks at the same step.
  auto micro_losses = torch::stack(losses).to(torch::kFloat64).cpu();            // (n_micro,)
  parallel_.world().allreduce_sum(micro_losses);
  micro_losses.div_(parallel_.world_size());
  for (int64_t m = 0; m < n_micro; ++m) {
    const double value = micro_losses[m].item<double>();
    SOME_REQUIRE(std::isfinite(value), NumericError,
                 "loss is {} at step {} (micro-batch {}); stopping the run", value, step, m);
  }
  const double loss_sum = micro_losses.sum().item<double>();

  auto t_reduce = now();
  grad_allreduce_->finish();                                                       // data parallel
  finish_expert_gradients();
  times.grad_allreduce = std::chrono::duration<double>(now() - t_reduce).count();

  auto t2 = now();
  result.grad_norm = clip_gradients();
  SOME_REQUIRE(std::isfinite(result.grad_norm), NumericError,
               "gradient norm is {} at step {}; stopping the run", result.grad_norm, step);
  optimizer_->step();
  auto t3 = now();

  // After-step update: every layer's routing statistics summed over the global batch (one
  // allreduce), then each router updates itself — Knowledge Gravity, the MoE selection bias.
  const bool log_line = step % train_.log_every == 0 || step == train_.max_steps;
  auto routing = model_->after_step(step, train_.seed, parallel_.world(), /*report=*/log_line);
  if (log_line) result.routing = std::move(routing);
  times.optimizer = std::chrono::duration<double>(t3 - t2).count();
  times.key_update = std::chrono::duration<double>(now() - t3).count();
  if (parallel_opts_.key_check_every > 0 && step % parallel_opts_.key_check_every == 0) check_key_stores(step);
  // ----------------------------- TRAINING STEP END -----------------------------
  result.loss = loss_sum / static_cast<double>(n_micro);
  return result;
}

void Trainer::finish_expert_gradients() {
  if (!expert_grad_allreduce_) return;
  // Each rank's loss is the mean over its own tokens, and an expert's gradient already sums the
  // contributions of the P ranks of its EP group (through the all-to-all): averaging over the
  // W/P replicas and dividing by P gives the gradient of the global mean loss, as for W = 1.
  expert_grad_allreduce_->finish();
  if (parallel_.ep_size() > 1) {
    torch::NoGradGuard no_grad;
    for (auto& p : expert_params_) {
      if (p.grad().defined()) p.mutable_grad().div_(static_cast<double>(parallel_.ep_size()));
    }
  }
}

double Trainer::clip_gradients() {
  // torch's clip_grad_norm_ over the whole model, whose experts are spread over the EP group:
  // replicated gradients are identical everywhere, the experts' squared norms are summed over
  // the group.
  torch::NoGradGuard no_grad;
  auto squared = [](const std::vector<torch::Tensor>& params) {  // (1,) on the host: one sync
    std::vector<torch::Tensor> sums;
    for (auto& p : params) {
      if (p.grad().defined()) sums.push_back(p.grad().to(torch::kFloat64).pow(2).sum());
    }
    return sums.empty() ? torch::zeros({1}, torch::kFloat64) : torch::stack(sums).sum().reshape({1}).cpu();
  };
  if (expert_params_.empty() || parallel_.ep_size() == 1) {
    // Every rank holds every parameter: exactly torch's clipping.
    const double max_norm = optim_.clip > 0 ? optim_.clip : std::numeric_limits<double>::infinity();
    return torch::nn::utils::clip_grad_norm_(params_, max_norm);
  }
  auto expert_sq = squared(expert_params_);
  parallel_.ep().allreduce_sum(expert_sq);
  const double norm = std::sqrt((squared(replicated_params_) + expert_sq).item<double>());
  if (optim_.clip > 0 && std::isfinite(norm)) {
    const double coef = std::min(1.0, optim_.clip / (norm + 1e-6));
    for (auto& p : params_) {
      if (p.grad().defined()) p.mutable_grad().mul_(coef);
    }
  }
  return norm;
}

void Trainer::log_forecast(int64_t step, double elapsed, const Progress& progress) const {
  const double left = progress.eta_s(static_cast<double>(step - start_step_));
  const double budget = train_.max_minutes * 60.0;
  const bool cut = train_.max_minutes > 0 && elapsed + left > budget;
  log::get("train")->info(
      "forecast: steps {}..{} take about {} more at this speed (evals and checkpoints extra){}", step + 1,
      train_.max_steps, format_duration(left),
      cut ? fmt::format("; train.max_minutes = {} stops the run near step {} of {}, with a final eval and "
                        "checkpoint (raise it, or lower train.max_steps, to finish)",
                        train_.max_minutes,
                        start_step_ + static_cast<int64_t>((step - start_step_) * budget / std::max(elapsed, 1e-9)),
                        train_.max_steps)
          : "");
}

Trainer::Control Trainer::agree_on_control(double elapsed, Clock::time_point last_checkpoint) {
  // Rank 0's clock decides the time-based decisions, any rank's stop signal counts. One small
  // allreduce per step.
  auto control = torch::zeros({3}, torch::kInt64);  // (signal, checkpoint due by time, out of time)
  control[0] = stop_signal_received() != 0 ? 1 : 0;
  if (parallel_.rank() == 0) {
    const double since_checkpoint = std::chrono::duration<double>(Clock::now() - last_checkpoint).count();
    control[1] = train_.checkpoint_minutes > 0 && since_checkpoint >= train_.checkpoint_minutes * 60.0 ? 1 : 0;
    control[2] = train_.max_minutes > 0 && elapsed >= train_.max_minutes * 60.0 ? 1 : 0;
  }
  parallel_.world().allreduce_sum(control);
  return {control[0].item<int64_t>() > 0, control[1].item<int64_t>() > 0, control[2].item<int64_t>() > 0};
}

TrainSummary Trainer::run() {
  auto log = log::get("train");
  log->info("training steps {}..{} of {} sequences x {} tokens ({} tokens/step), {} val windows", start_step_ + 1,
            train_.max_steps, train_.global_batch, train_.seq_len, tokens_per_step(), evaluator_->num_windows());
  TrainSummary summary;
  summary.steps = start_step_;
  summary.unigram_ppl = evaluator_->unigram_ppl();
  const bool checkpoints = !run_dir_.empty();
  const auto start = Clock::now();
  run_start_ = start;
  auto last_checkpoint = start;
  ThroughputWindow window;  // tokens/s of the log lines: training steps only
  StepResult last_step;     // the latest step's result (its loss and LR go into eval and done lines)
  double tok_s = 0;
  Progress progress(static_cast<double>(train_.max_steps - start_step_));
  // Test hooks (common/fault_injection.h).
  const auto throw_at = fault::rank_and_step("SOME_INJECT_FAULT");
  const auto torch_error = fault::rank_and_step("SOME_INJECT_TORCH_ERROR");
  const auto signal_at = fault::rank_and_step("SOME_INJECT_SIGNAL");
  for (int64_t step = start_step_ + 1; step <= train_.max_steps; ++step) {
    if (throw_at && throw_at->first == parallel_.rank() && throw_at->second == step) {
      throw Error(fmt::format("injected fault on rank {} at step {} (SOME_INJECT_FAULT)", throw_at->first, step));
    }
    const bool torch_error_now = torch_error && torch_error->first == parallel_.rank() && torch_error->second == step;
    TORCH_CHECK(!torch_error_now, "injected LibTorch error on rank ", parallel_.rank(), " at step ", step,
                " (SOME_INJECT_TORCH_ERROR)");

    // 1. The step.
    last_step = train_step(step);
    if (signal_at && signal_at->first == parallel_.rank() && signal_at->second == step) request_stop(SIGUSR1);
    summary.steps = step;
    ++window.steps;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

    // 2. Forecast, early: a slow machine learns at once what this run will do.
    if (step == start_step_ + kForecastAfterSteps && step < train_.max_steps) log_forecast(step, elapsed, progress);

    // 3. Agree on stopping: every rank takes the same decision at the same step.
    const auto control = agree_on_control(elapsed, last_checkpoint);
    const bool last = step == train_.max_steps || control.out_of_time || control.stop_signal;

    // 4. Log.
    if (step % train_.log_every == 0 || last) {
      tok_s = window.rate(tokens_per_step());
      double eta = progress.eta_s(static_cast<double>(step - start_step_));
      if (train_.max_minutes > 0) eta = std::min(eta, train_.max_minutes * 60.0 - elapsed);
      log->info("step {:>5}/{} | loss {:.4f} | lr {:.2e} | gnorm {:.3f} | {} tok/s | {} elapsed | ETA {}",
                step, train_.max_steps, last_step.loss, last_step.lr, last_step.grad_norm, format_count(tok_s),
                format_duration(elapsed_before_ + elapsed), format_duration(std::max(eta, 0.0)));
      log_step(step, last_step, tok_s, elapsed_before_ + elapsed);
    }

    // 5. Evaluate (a preempted run has seconds left: checkpoint first, evaluate never).
    if (((train_.eval_every > 0 && step % train_.eval_every == 0) || last) && !control.stop_signal) {
      auto result = evaluate_and_log(step, last_step.loss, last_step.lr, tok_s, elapsed_before_ + elapsed);
      summary.val_loss = result.loss;
      summary.val_ppl = result.ppl;
      window.restart();  // evaluation time is not training throughput
    }

    // 6. Checkpoint.
    const bool due = (train_.checkpoint_every > 0 && step % train_.checkpoint_every == 0) || control.checkpoint_due;
    if (checkpoints && (due || last)) {
      summary.checkpoint = save_checkpoint(step, control.stop_signal ? "signal" : last ? "final" : due ? "interval" : "");
      last_checkpoint = Clock::now();
      window.restart();
    }

    // 7. Stop.
    if (control.stop_signal) {
      log->warn("stop signal received: stopped after step {}{}", step,
                checkpoints ? fmt::format(", checkpoint {}; continue with --resume auto", summary.checkpoint) : "");
      summary.preempted = true;
      break;
    }
    if (control.out_of_time) {
      log->warn("train.max_minutes = {} reached at step {}: stopping", train_.max_minutes, step);
      summary.stopped_by_time = true;
      break;
    }
  }
  if (summary.steps == start_step_) {
    // Resumed at train.max_steps: nothing to train. The checkpoint is written again into this
    // run directory (a conversion to this W and P, e.g. for a round-trip check).
    log->info("step {} is train.max_steps = {}: nothing to train", start_step_, train_.max_steps);
    auto result = evaluator_->run(model_);
    summary.val_loss = result.loss;
    summary.val_ppl = result.ppl;
    std::error_code ec;
    const bool own = !resumed_from_.empty() &&
                     std::filesystem::equivalent(std::filesystem::path(resumed_from_).parent_path(),
                                                 run_dir_ + "/checkpoints", ec);
    if (checkpoints && !own) summary.checkpoint = save_checkpoint(start_step_, "final");
    if (own) summary.checkpoint = resumed_from_;
  }
  summary.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  summary.tokens = summary.steps * tokens_per_step();
  summary.train_loss = last_step.loss;
  summary.tokens_per_s = static_cast<double>((summary.steps - start_step_) * tokens_per_step()) /
                         std::max(summary.elapsed_s, 1e-9);
  if (summary.preempted) {
    log_metrics({{"event", "preempted"}, {"step", summary.steps}, {"tokens", summary.tokens},
                    {"signal", stop_signal_received()}, {"checkpoint", summary.checkpoint}});
  } else {
    log_metrics({{"event", "done"}, {"step", summary.steps}, {"tokens", summary.tokens},
                    {"loss", summary.train_loss}, {"lr", last_step.lr}, {"tokens_per_s", summary.tokens_per_s},
                    {"elapsed_s", elapsed_before_ + summary.elapsed_s}, {"val_loss", summary.val_loss},
                    {"val_ppl", summary.val_ppl}, {"unigram_ppl", summary.unigram_ppl},
                    {"stopped_by_time", summary.stopped_by_time}, {"checkpoint", summary.checkpoint},
                    {"model_flops_per_token", model_->flops_per_token(train_.seq_len, true)}});
  }
  return summary;
}

}  // namespace some::train
