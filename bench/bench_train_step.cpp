// Single-process train-step throughput on one device (a CPU, or one GPU): tokens/s of each
// config asked for, the step split into synchronised phases (forward, backward, optimizer, key
// update), model FLOPs per token, MFU against the GEMM peak measured in the same run (fp32 on
// the CPU, bf16 on a GPU) and, on a GPU, against the H100's dense bf16 peak of 989 TFLOP/s, and
// the peak of the device's allocator. Prints JSON lines, each as soon as it is known, so that a
// run cut short keeps what it measured: a header (device, dtype, torch, threads, the GEMM peak),
// then one line per config ("config": name, ...), then — for default,default_4x_wide — a summary
// line with the wide/default ratio. Every line has "benchmark": "train_step".
//
//   build/bin/bench_train_step [--steps 8] [--warmup 2] [--data data/default]
//   build/bin/bench_train_step --device cuda --dtype bfloat16 --configs default,150m,1b
//   build/bin/bench_train_step --configs default --profile 3 [--profile-shapes]   (where the step goes)
//
// Configs: default (configs/default.toml), default_4x_wide (d_model, d_expert and heads x4),
// 150m (configs/some-150m.toml), 1b (configs/some-1b.toml), or a path to any TOML config. Every
// config is run with parallel.expert_parallel = 1: one process holds every expert.
#include <chrono>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include "common/cuda_info.h"
#include "common/errors.h"
#include "common/logging.h"
#include "launcher/config.h"
#include "launcher/session.h"
#include "parallel/parallel_state.h"
#include "src/train/device.h"
#include "src/train/trainer.h"

using namespace some;
using Clock = std::chrono::steady_clock;

namespace {

// H100 SXM dense bf16 tensor-core peak (NVIDIA's datasheet figure without sparsity).
constexpr double kH100Bf16PeakFlops = 989e12;

struct GemmPeak {
  double flops = 0;
  std::string dtype, shape;
};

// The best of `reps` n x n x n matmuls after a warm-up, in FLOP/s: fp32 on the CPU, bf16 on a GPU
// (the precision its tensor cores and the model's autocast GEMMs use).
GemmPeak gemm_peak(const torch::Device& device, int64_t n, int reps) {
  const auto dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  torch::matmul(a, b);
  train::synchronize(device);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    auto c = torch::matmul(a, b);
    train::synchronize(device);
    best = std::max(best, 2.0 * n * n * n / std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return {best, device.is_cuda() ? "bfloat16" : "float32", fmt::format("{0}x{0}x{0}", n)};
}

// Self CPU time per op over `steps` steps under the Kineto profiler (what torch.profiler's
// key_averages() calls self time): each event's duration minus its direct children's on the
// same thread. The top `top` ops (with `by_shape`: op and input shapes), in ms per step and as a
// share of the profiled wall time.
nlohmann::json profile_steps(train::Trainer& trainer, int first_step, int steps, int top, bool by_shape) {
  namespace prof = torch::profiler::impl;
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO, /*report_input_shapes=*/by_shape);
  const std::set<prof::ActivityType> activities = {prof::ActivityType::CPU};
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  const auto t0 = Clock::now();
  for (int s = first_step; s < first_step + steps; ++s) trainer.train_step(s);
  const double wall_ms = 1e3 * std::chrono::duration<double>(Clock::now() - t0).count();
  const auto result = torch::autograd::profiler::disableProfiler();

  struct Span {
    uint64_t start, end;
    std::string name;
  };
  std::map<uint64_t, std::vector<Span>> by_thread;
  for (const auto& e : result->events()) {
    if (e.isHiddenEvent() || e.deviceType() != c10::DeviceType::CPU) continue;
    auto name = e.name();
    if (by_shape) {
      for (const auto& shape : e.shapes()) name += c10::str(c10::IntArrayRef(shape));
    }
    by_thread[e.startThreadId()].push_back({e.startNs(), e.endNs(), name});
  }
  std::map<std::string, std::pair<double, int64_t>> self_ns;  // name -> (self ns, calls)
  for (auto& [thread, spans] : by_thread) {
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
      return a.start != b.start ? a.start < b.start : a.end > b.end;  // parents before children
    });
    std::vector<std::pair<const Span*, double>> open;  // (span, its children's ns so far)
    auto close = [&](const Span* span, double children) {
      auto& entry = self_ns[span->name];
      entry.first += static_cast<double>(span->end - span->start) - children;
      entry.second += 1;
    };
    for (const auto& span : spans) {
      while (!open.empty() && open.back().first->end <= span.start) {
        close(open.back().first, open.back().second);
        open.pop_back();
      }
      if (!open.empty()) open.back().second += static_cast<double>(span.end - span.start);
      open.emplace_back(&span, 0.0);
    }
    while (!open.empty()) {
      close(open.back().first, open.back().second);
      open.pop_back();
    }
  }
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> ranked(self_ns.begin(), self_ns.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  nlohmann::json ops = nlohmann::json::array();
  for (int i = 0; i < std::min<int>(top, static_cast<int>(ranked.size())); ++i) {
    const auto& [name, stat] = ranked[i];
    const double ms = stat.first / 1e6 / steps;
    ops.push_back({{"op", name}, {"self_ms_per_step", ms}, {"share", ms * steps / wall_ms},
                   {"calls_per_step", static_cast<double>(stat.second) / steps}});
  }
  return {{"steps", steps}, {"step_ms", wall_ms / steps}, {"top_self_cpu", ops}};
}

launcher::Config named_config(const std::string& name, const std::vector<std::string>& overrides) {
  const std::map<std::string, std::string> files = {{"default", "configs/default.toml"},
                                                    {"default_4x_wide", "configs/default.toml"},
                                                    {"150m", "configs/some-150m.toml"},
                                                    {"1b", "configs/some-1b.toml"}};
  auto file = files.count(name) ? files.at(name) : name;
  if (!std::filesystem::exists(file)) {
    throw ConfigError(fmt::format("--configs: '{}' is neither a known config (default, default_4x_wide, 150m, 1b) "
                                  "nor a TOML file",
                                  name));
  }
  auto cfg = launcher::load_config(file, overrides);
  if (name == "default_4x_wide") {
    cfg.model.d_model *= 4;
    cfg.model.d_expert *= 4;
    cfg.model.n_heads *= 4;
  }
  cfg.parallel.expert_parallel = 1;
  return cfg;
}

nlohmann::json bench_config(const std::string& name, launcher::Config cfg, const data::DatasetMeta& meta,
                            const torch::Device& device, int steps, int warmup, const GemmPeak& peak,
                            int profile, bool profile_shapes) {
  auto parallel = parallel::ParallelState::single_process();
  cfg.train.max_steps = 1 << 20;
  cfg.train.device = device.is_cuda() ? train::DeviceKind::kCuda : train::DeviceKind::kCpu;
  cfg.train.cuda_index = device.is_cuda() ? device.index() : 0;
  cfg.train.synchronize_phases = true;
  cfg.train.eval_sample_tokens = 0;
  model::Transformer model(launcher::model_options(cfg, meta));
  train::Trainer trainer(model, cfg.optim, cfg.train, meta, "", parallel);
  for (int s = 1; s <= warmup; ++s) trainer.train_step(s);
  train::synchronize(device);
  train::reset_peak_memory(device);
  train::StepTimes sum;
  auto t0 = Clock::now();
  for (int s = warmup + 1; s <= warmup + steps; ++s) {
    const auto t = trainer.train_step(s).times;
    sum.forward += t.forward;
    sum.backward += t.backward;
    sum.grad_allreduce += t.grad_allreduce;
    sum.optimizer += t.optimizer;
    sum.key_update += t.key_update;
  }
  train::synchronize(device);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const double tokens = static_cast<double>(steps) * cfg.train.global_batch * cfg.train.seq_len;
  const double flops_per_token = model->flops_per_token(cfg.train.seq_len, true);
  const double tok_s = tokens / wall, achieved = flops_per_token * tok_s;
  const double phases = sum.forward + sum.backward + sum.grad_allreduce + sum.optimizer + sum.key_update;
  nlohmann::json out = {
      {"config", name},
      {"d_model", cfg.model.d_model},
      {"n_layers", cfg.model.n_layers},
      {"d_expert", cfg.model.d_expert},
      {"num_experts", cfg.model.num_experts},
      {"parameters_total", model->num_parameters(false)},
      {"parameters_trainable", model->num_parameters(true)},
      {"tokens_per_step", cfg.train.global_batch * cfg.train.seq_len},
      {"micro_batches_per_step", cfg.train.global_batch / cfg.train.micro_batch},
      {"steps_timed", steps},
      {"tokens_per_s", tok_s},
      {"step_ms", 1e3 * wall / steps},
      {"phase_ms", {{"forward", 1e3 * sum.forward / steps},
                    {"backward", 1e3 * sum.backward / steps},
                    {"grad_allreduce", 1e3 * sum.grad_allreduce / steps},
                    {"optimizer", 1e3 * sum.optimizer / steps},
                    {"key_update", 1e3 * sum.key_update / steps},
                    {"other", 1e3 * (wall - phases) / steps}}},
      {"model_flops_per_token", flops_per_token},
      {"achieved_flops", achieved},
      {"mfu_vs_measured_gemm_peak", achieved / peak.flops},
      {"peak_memory_gib", nullptr}};  // the device allocator's peak: GPUs only
  if (profile > 0) out["profile"] = profile_steps(trainer, warmup + steps + 1, profile, profile_shapes ? 60 : 25, profile_shapes);
  if (device.is_cuda()) {
    out["peak_memory_gib"] = static_cast<double>(train::peak_memory_bytes(device)) / (1 << 30);
    out["mfu_vs_h100_bf16_989_tflops"] = achieved / kH100Bf16PeakFlops;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SoME train-step benchmark (JSON on stdout)"};
  int steps = 8, warmup = 2, profile = 0;
  bool profile_shapes = false;
  std::string data_dir = "data/default", device_name = "cpu", dtype;
  std::vector<std::string> configs = {"default", "default_4x_wide"}, overrides;
  app.add_option("--steps", steps, "timed steps per config")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--profile", profile, "after the timed steps, profile this many more and report the top ops by "
                                      "self CPU time")->capture_default_str();
  app.add_flag("--profile-shapes", profile_shapes, "with --profile: one entry per op and input shapes");
  app.add_option("--data", data_dir, "dataset")->capture_default_str();
  app.add_option("--device", device_name, "cpu, or cuda (one GPU)")->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--dtype", dtype, "float32 or bfloat16 (autocast); default: float32 on cpu, bfloat16 on cuda")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_option("--configs", configs, "comma-separated: default, default_4x_wide, 150m, 1b, or TOML paths")
      ->delimiter(',')->capture_default_str();
  app.add_option("--set", overrides, "config override KEY=VALUE for every config (repeatable)");
  CLI11_PARSE(app, argc, argv);
  log::setup();
  spdlog::set_level(spdlog::level::warn);
  try {
    if (device_name == "cuda" && !torch::cuda::is_available()) {
      throw ConfigError("--device cuda: no CUDA device is available to this LibTorch build");
    }
    const torch::Device device = device_name == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
    if (dtype.empty()) dtype = device.is_cuda() ? "bfloat16" : "float32";
    overrides.push_back("train.dtype=" + dtype);
    auto first = named_config(configs.front(), overrides);
    launcher::set_threads(first);
    auto meta = launcher::ensure_dataset(data_dir);
    const auto peak = gemm_peak(device, device.is_cuda() ? 8192 : 1024, 10);
    auto emit = [](nlohmann::json line) {  // one line, flushed: survives a cut of what follows
      line["benchmark"] = "train_step";
      std::cout << line.dump() << std::endl;
    };
    nlohmann::json header = {{"device", device.is_cuda() ? describe_cuda_devices() : std::string("cpu")},
                             {"dtype", dtype},
                             {"torch_version", TORCH_VERSION},
                             {"threads", torch::get_num_threads()},
                             {"gemm_peak_flops", peak.flops},
                             {"gemm_peak_dtype", peak.dtype},
                             {"gemm_peak_shape", peak.shape},
                             {"configs", configs}};
    if (device.is_cuda()) header["h100_bf16_peak_flops"] = kH100Bf16PeakFlops;
    emit(header);

    std::vector<double> tokens_per_s;
    for (const auto& name : configs) {
      auto cfg = named_config(name, overrides);
      // Big models on the CPU (d_model >= 512): a quarter of the steps and one warm-up step.
      const bool shorten = !device.is_cuda() && cfg.model.d_model >= 512;
      auto result = bench_config(name, cfg, meta, device, shorten ? std::max(2, steps / 4) : steps,
                                 shorten ? 1 : warmup, peak, profile, profile_shapes);
      tokens_per_s.push_back(result["tokens_per_s"].get<double>());
      std::cerr << "bench_train_step: " << name << " " << tokens_per_s.back() << " tokens/s" << std::endl;
      emit(result);
    }
    if (configs.size() >= 2 && configs[0] == "default" && configs[1] == "default_4x_wide") {
      emit({{"wide_vs_default_tokens_per_s", tokens_per_s[1] / tokens_per_s[0]}});
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_train_step: " << e.what() << std::endl;
    return 2;
  }
  return 0;
}
