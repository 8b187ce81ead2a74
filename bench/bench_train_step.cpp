// Single-process train-step throughput: tokens/s of the default config and of a 4x wider one,
// split into forward, backward, optimizer and key update, with model FLOPs per token and the
// fraction of this machine's fp32 GEMM peak, measured in the same run. Prints JSON.
//
//   build/bin/bench_train_step [--steps 8] [--warmup 2] [--data data/default]
#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/logging.h"
#include "launcher/config.h"
#include "launcher/session.h"
#include "parallel/parallel_state.h"
#include "src/train/trainer.h"

using namespace some;
using Clock = std::chrono::steady_clock;

namespace {

// Best of several runs of an n x n x n fp32 matmul, in FLOP/s.
double gemm_peak_flops(int64_t n, int reps) {
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::matmul(a, b);  // warm up
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    auto c = torch::matmul(a, b);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s);
  }
  return best;
}

nlohmann::json bench_config(const std::string& name, launcher::Config cfg, const data::DatasetMeta& meta,
                            int steps, int warmup, double peak) {
  auto parallel = parallel::ParallelState::single_process();
  cfg.train.max_steps = 1 << 20;
  model::Transformer model(launcher::model_options(cfg, meta));
  train::Trainer trainer(model, cfg.optim, cfg.train, meta, "", parallel);
  for (int s = 1; s <= warmup; ++s) trainer.train_step(s);
  train::StepTimes sum;
  auto t0 = Clock::now();
  for (int s = warmup + 1; s <= warmup + steps; ++s) {
    trainer.train_step(s);
    const auto& t = trainer.last_step_times();
    sum.forward += t.forward;
    sum.backward += t.backward;
    sum.optimizer += t.optimizer;
    sum.key_update += t.key_update;
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const double tokens = static_cast<double>(steps) * cfg.train.global_batch * cfg.train.seq_len;
  const double flops_per_token = model->flops_per_token(cfg.train.seq_len, true);
  const double tok_s = tokens / wall;
  return {{"config", name},
          {"d_model", cfg.model.d_model},
          {"d_expert", cfg.model.d_expert},
          {"num_experts", cfg.model.num_experts},
          {"parameters_total", model->num_parameters(false)},
          {"parameters_trainable", model->num_parameters(true)},
          {"tokens_per_step", cfg.train.global_batch * cfg.train.seq_len},
          {"steps_timed", steps},
          {"tokens_per_s", tok_s},
          {"step_ms", 1e3 * wall / steps},
          {"phase_ms", {{"forward", 1e3 * sum.forward / steps},
                        {"backward", 1e3 * sum.backward / steps},
                        {"optimizer", 1e3 * sum.optimizer / steps},
                        {"key_update", 1e3 * sum.key_update / steps},
                        {"other", 1e3 * (wall - sum.forward - sum.backward - sum.optimizer - sum.key_update) / steps}}},
          {"model_flops_per_token", flops_per_token},
          {"achieved_flops", flops_per_token * tok_s},
          {"fraction_of_gemm_peak", flops_per_token * tok_s / peak}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SoME train-step benchmark (JSON on stdout)"};
  int steps = 8, warmup = 2;
  std::string data_dir = "data/default", config = "configs/default.toml";
  app.add_option("--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--data", data_dir, "dataset")->capture_default_str();
  app.add_option("--config", config, "base config")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  log::setup();
  spdlog::set_level(spdlog::level::warn);

  auto cfg = launcher::load_config(config, {});
  launcher::set_threads(cfg);
  auto meta = launcher::ensure_dataset(data_dir);
  const double peak = gemm_peak_flops(1024, 10);

  auto wide = cfg;  // 4x wider: model width, expert width and heads x4
  wide.model.d_model *= 4;
  wide.model.d_expert *= 4;
  wide.model.n_heads *= 4;

  nlohmann::json out = {{"benchmark", "train_step"},
                        {"threads", torch::get_num_threads()},
                        {"gemm_peak_fp32_flops", peak},
                        {"gemm_peak_shape", "1024x1024x1024"},
                        {"results", {bench_config("default", cfg, meta, steps, warmup, peak),
                                     bench_config("default_4x_wide", wide, meta, std::max(2, steps / 4), 1, peak)}}};
  auto& r = out["results"];
  out["wide_vs_default_tokens_per_s"] = r[1]["tokens_per_s"].get<double>() / r[0]["tokens_per_s"].get<double>();
  std::cout << out.dump(2) << std::endl;
  return 0;
}
