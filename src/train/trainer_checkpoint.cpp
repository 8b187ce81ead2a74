// The Trainer's side of checkpoints (docs/design.md §7): which tensors this rank writes, the save with
// its trainer state, and resuming from any W and P. The format itself is checkpoints/.
#include <filesystem>
#include <fstream>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/ranges.h>

#include "checkpoints/checkpoint.h"
#include "common/check.h"
#include "common/errors.h"
#include "common/files.h"
#include "common/logging.h"
#include "src/model/tensor_names.h"
#include "src/train/lr_schedule.h"
#include "src/train/trainer.h"

namespace some::train {

using Clock = std::chrono::steady_clock;

std::map<std::string, torch::Tensor> Trainer::optimizer_tensors() {
  std::map<std::string, torch::Tensor> exp_avg, exp_avg_sq;
  auto& state = optimizer_->state();
  for (auto& [name, p] : named_params_) {
    auto key = p.unsafeGetTensorImpl();
    if (!state.count(key)) {  // as AdamW creates it at its first step
      auto fresh = std::make_unique<torch::optim::AdamWParamState>();
      fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      state[key] = std::move(fresh);
    }
    auto& s = static_cast<torch::optim::AdamWParamState&>(*state.at(key));
    exp_avg.emplace(name, s.exp_avg());
    exp_avg_sq.emplace(name, s.exp_avg_sq());
  }
  // Moments of trainable experts are named per expert, like the experts, so they reshard too.
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, t] : model_->split_experts(exp_avg)) out.emplace(model::names::optimizer_state("exp_avg", name), t);
  for (auto& [name, t] : model_->split_experts(exp_avg_sq)) out.emplace(model::names::optimizer_state("exp_avg_sq", name), t);
  return out;
}

std::map<std::string, torch::Tensor> Trainer::checkpoint_tensors() {
  std::map<std::string, torch::Tensor> out;
  const bool replicated_writer = parallel_.rank() == 0;
  const bool expert_writer = parallel_.ep_group() == 0;  // one copy of every expert
  for (auto& [name, t] : model_->state_tensors()) {
    if (model::names::is_sharded(name) ? expert_writer : replicated_writer) out.emplace(name, t);
  }
  for (auto& [name, t] : optimizer_tensors()) {
    if (model::names::is_sharded(name) ? expert_writer : replicated_writer) out.emplace(name, t);
  }
  if (!replicated_writer) return out;
  auto& state = optimizer_->state();
  for (auto& [name, p] : named_params_) {
    const auto step = static_cast<torch::optim::AdamWParamState&>(*state.at(p.unsafeGetTensorImpl())).step();
    out.emplace(model::names::optimizer_state("step", name), torch::tensor({step}, torch::kInt64));
  }
  {
    // Nothing in a training step draws from it today; saved so that anything that does later
    // (dropout, sampling) resumes exactly too.
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    out.emplace(std::string(model::names::kRngCpu), gen.get_state());
  }
  return out;
}

std::string Trainer::save_checkpoint(int64_t step, const std::string& reason) {
  SOME_REQUIRE(!run_dir_.empty(), Error, "save_checkpoint needs a run directory");
  const auto t0 = Clock::now();
  checkpoints::CheckpointInfo info;
  info.step = step;
  info.tokens = step * train_.global_batch * train_.seq_len;
  info.world_size = parallel_.world_size();
  info.expert_parallel = parallel_.ep_size();
  info.config = config_text_;
  info.trainer = {{"reason", reason},
                  {"optimizer", "adamw"},
                  {"lr", learning_rate(step, optim_.warmup_steps, train_.max_steps, optim_.lr, optim_.min_lr_ratio)},
                  {"sampler", {{"seed", train_.seed}, {"next_step", step + 1}, {"global_batch", train_.global_batch},
                               {"seq_len", train_.seq_len}}},
                  {"elapsed_s", elapsed_before_ + std::chrono::duration<double>(Clock::now() - run_start_).count()}};
  const auto checkpoints_dir = run_dir_ + "/checkpoints";
  auto tensors = checkpoint_tensors();
  if (train_.checkpoint_experts == ExpertsInCheckpoints::kOnce && !model_->some_layers().empty()) {
    // The frozen experts go to a library at this process's first save; every checkpoint then
    // references it instead of rewriting them (a resumed process writes its own). Trainable
    // experts (the baselines) change every step and stay in every checkpoint.
    checkpoints::TensorMap experts;
    for (auto it = tensors.begin(); it != tensors.end();) {
      if (model::names::is_frozen_expert(it->first)) {
        experts.insert(*it);
        it = tensors.erase(it);
      } else {
        ++it;
      }
    }
    if (expert_library_.empty()) {
      const auto name = fmt::format("experts_{:08d}", step);
      checkpoints::save_library(checkpoints_dir, name, info, experts, parallel_.world());
      expert_library_ = name;
    }
  }
  auto dir = checkpoints::save_checkpoint(checkpoints_dir, info, tensors, parallel_.world(),
                                          static_cast<int>(train_.keep_last), expert_library_);
  log::get("train")->info("checkpoint {} ({}) written in {:.2f} s", dir, reason,
                          std::chrono::duration<double>(Clock::now() - t0).count());
  return dir;
}

int64_t Trainer::resume(const std::string& checkpoint_dir, bool verify) {
  checkpoints::CheckpointReader reader(checkpoint_dir, verify, &parallel_.world());
  const auto& m = reader.manifest();
  // Weights, key stores and usage, and this rank's experts by their global names (resharding
  // is nothing more than which experts a rank asks for).
  auto state = model_->state_tensors();
  auto optim = optimizer_tensors();
  state.insert(optim.begin(), optim.end());
  reader.load_into(state);
  auto& opt_state = optimizer_->state();
  for (auto& [name, p] : named_params_) {
    auto step = reader.read(model::names::optimizer_state("step", name));
    static_cast<torch::optim::AdamWParamState&>(*opt_state.at(p.unsafeGetTensorImpl())).step(step[0].item<int64_t>());
  }
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(reader.read(std::string(model::names::kRngCpu)));
  }
  const auto& sampler = m.info.trainer.value("sampler", nlohmann::json::object());
  if (sampler.value("seed", train_.seed) != train_.seed || sampler.value("global_batch", train_.global_batch) != train_.global_batch) {
    log::get("train")->warn("resuming with train.seed / train.global_batch different from the checkpoint's ({} / {}): "
                            "the data order does not continue the original run",
                            sampler.value("seed", train_.seed), sampler.value("global_batch", train_.global_batch));
  }
  start_step_ = m.info.step;
  resumed_from_ = reader.dir();
  // Continuing in the same run directory: its expert library holds exactly the experts just
  // loaded (they are frozen), so later checkpoints reference it instead of writing another.
  std::error_code ec;
  if (train_.checkpoint_experts == ExpertsInCheckpoints::kOnce && !m.library.empty() && !run_dir_.empty() &&
      std::filesystem::equivalent(std::filesystem::path(reader.dir()).parent_path(), run_dir_ + "/checkpoints", ec)) {
    expert_library_ = std::filesystem::path(m.library).filename().string();
  }
  elapsed_before_ = m.info.trainer.value("elapsed_s", 0.0);
  if (!run_dir_.empty() && parallel_.rank() == 0) keep_metrics_until(start_step_);
  log_metrics({{"event", "resume"}, {"step", start_step_}, {"checkpoint", reader.dir()},
                  {"world_size", parallel_.world_size()}, {"expert_parallel", parallel_.ep_size()},
                  {"from_world_size", m.info.world_size}, {"from_expert_parallel", m.info.expert_parallel}});
  log::get("train")->info("resumed from {} at step {} (written by W={} P={}; now W={} P={})", reader.dir(), start_step_,
                          m.info.world_size, m.info.expert_parallel, parallel_.world_size(), parallel_.ep_size());
  return start_step_;
}

void Trainer::init_optimizer_state(const std::map<std::string, torch::Tensor>& given) {
  torch::NoGradGuard no_grad;
  int64_t moments = 0, steps = 0;
  for (auto& [name, t] : optimizer_tensors()) {  // views into the optimizer's (fresh) state
    auto it = given.find(name);
    if (it == given.end()) continue;
    SOME_REQUIRE(it->second.sizes() == t.sizes(), Error, "initial optimizer state {}: shape ({}) for ({})", name,
                 fmt::join(it->second.sizes(), ", "), fmt::join(t.sizes(), ", "));
    t.copy_(it->second);
    ++moments;
  }
  auto& state = optimizer_->state();
  for (auto& [name, p] : named_params_) {
    auto it = given.find(model::names::optimizer_state("step", name));
    if (it == given.end()) continue;
    static_cast<torch::optim::AdamWParamState&>(*state.at(p.unsafeGetTensorImpl())).step(it->second[0].item<int64_t>());
    ++steps;
  }
  log::get("train")->info("optimizer state from model.init_from: {} moments, {} step counts", moments, steps);
}

void Trainer::keep_metrics_until(int64_t step) {
  const auto path = run_dir_ + "/metrics.jsonl";
  std::ifstream in(path);
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("step", int64_t{0}) <= step && j.value("event", "") != "done") kept += line + "\n";
  }
  in.close();
  write_file_atomic(path, kept);  // a crash here leaves the old file whole, never a cut one
  metrics_ = JsonLines(path);
}

}  // namespace some::train
