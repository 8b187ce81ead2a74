// Weak-scaling benchmark of the multi-rank train step (CPU, MPI): a fixed number of sequences
// per rank, one intra-op thread per rank, W ranks from `mpirun -np W` (or one plain process).
// Every collective goes through an InstrumentedCommunicator (world and EP group), so a step is
// split into compute, all-to-all (token dispatch / combine and their backward), the per-layer
// count exchange of the dispatcher, the gradient allreduce, the one allreduce of every layer's
// routing statistics (loads, dropped slots, key-store n, S, C) and small control allreduces. Times are reduced over ranks by max (like nccl-tests); rank 0
// prints one JSON line.
//
//   mpirun -np 4 build/bin/bench_parallel [--expert-parallel P] [--per-rank-batch 8] [--steps 5]
//
// Conventions: "bytes" of an all-to-all are the rows this rank sends to OTHER ranks (rows kept
// for itself are `self_bytes`); "bytes" of an allreduce are its payload (a ring puts
// 2 (W-1)/W of it on the wire per rank, reported as `ring_wire_bytes`). "ms" are host wall time
// inside the communicator calls, so a blocking collective also contains the time it waits for
// the slowest rank to arrive (load imbalance), as in any MPI/NCCL measurement. After the timed
// steps the same collectives run in isolation (best of 21, barrier before each):
// `isolated_collectives` is this transport's alpha-beta, and `alpha_beta_estimate` prices the
// step's calls with it, i.e. the communication time without the waiting.
#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/errors.h"
#include "common/logging.h"
#include "launcher/config.h"
#include "launcher/session.h"
#include "parallel/instrumented_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/parallel_state.h"
#include "src/model/routed_ffn.h"
#include "src/train/trainer.h"

using namespace some;
using parallel::CommOp;
using Clock = std::chrono::steady_clock;

namespace {

// Best of several runs of an n x n x n fp32 matmul at the current thread count, in FLOP/s.
double gemm_peak_flops(int64_t n, int reps) {
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::matmul(a, b);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    auto c = torch::matmul(a, b);
    best = std::max(best, 2.0 * n * n * n / std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// Best (minimum) seconds of `op` on this rank over `reps` calls, each started right after a
// barrier so that arrival skew is (mostly) excluded: the transport's own cost. The minimum, not
// the mean: on a shared machine a call whose peer was descheduled measures the scheduler.
double isolated_seconds(parallel::Communicator& comm, int reps, const std::function<void()>& op) {
  op();  // warm up (buffers, connections)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    comm.barrier();
    auto t0 = Clock::now();
    op();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// Per-rank measurements, summed over the timed steps (divided by the step count at the end).
enum Metric : int {
  kStep, kForward, kBackward, kGradPhase, kOptimizer, kKeyPhase,
  kA2aCalls, kA2aBytes, kA2aSelfBytes, kA2aS,
  kCountsCalls, kCountsBytes, kCountsS,            // the dispatcher's allgather of split counts (EP)
  kGradCalls, kGradBytes, kGradS,                  // async allreduces: gradient buckets
  kKeyCalls, kKeyBytes, kKeyS,                     // the routing-statistics buffer (TransformerImpl::after_step)
  kCtlCalls, kCtlBytes, kCtlS,                     // loss / dropped-slot allreduces (a few floats)
  kOtherCalls, kOtherBytes, kOtherS,               // any other collective (broadcast, world allgather, ...)
  kCommS,
  kOtherPhase,                                     // step time outside the five phases
  kNumMetrics
};

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiRuntime mpi(&argc, &argv);
  CLI::App app{"SoME multi-rank weak-scaling benchmark (one JSON line from rank 0)"};
  std::string config = "configs/default.toml", data_dir = "data/default";
  std::vector<std::string> overrides;
  int steps = 5, warmup = 2, expert_parallel = 0, threads = 1;
  int64_t per_rank_batch = 8, micro_batch = 8, seq_len = 128;
  app.add_option("--config", config, "base config")->capture_default_str();
  app.add_option("--set", overrides, "section.key=value override (repeatable)");
  app.add_option("--data", data_dir, "dataset (data/default is built if absent)")->capture_default_str();
  app.add_option("--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--expert-parallel", expert_parallel, "P (0 = the world size)")->capture_default_str();
  app.add_option("--per-rank-batch", per_rank_batch, "sequences per rank per step")->capture_default_str();
  app.add_option("--micro-batch", micro_batch, "sequences per micro-batch")->capture_default_str();
  app.add_option("--seq-len", seq_len, "tokens per sequence")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads per rank")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  int rank = 0;
  try {
    // ---- rank grid: instrumented world and expert-parallel group --------------------------
    std::shared_ptr<parallel::Communicator> world_raw;
    std::shared_ptr<parallel::MpiCommunicator> world_mpi;
    if (mpi.active()) {
      world_mpi = std::make_shared<parallel::MpiCommunicator>(MPI_COMM_WORLD);
      world_raw = world_mpi;
    } else {
      world_raw = std::make_shared<parallel::LocalCommunicator>();
    }
    const int W = world_raw->world_size();
    rank = world_raw->rank();
    const int P = expert_parallel > 0 ? expert_parallel : W;
    if (P < 1 || W % P != 0) throw ConfigError(fmt::format("--expert-parallel {} must divide the world size {}", P, W));
    std::shared_ptr<parallel::Communicator> ep_raw;
    if (P > 1) {
      ep_raw = world_mpi->split(rank / P);
    } else {
      ep_raw = std::make_shared<parallel::LocalCommunicator>();
    }
    auto world = std::make_shared<parallel::InstrumentedCommunicator>(world_raw);
    auto ep = std::make_shared<parallel::InstrumentedCommunicator>(ep_raw);
    parallel::ParallelState state(world, ep);

    log::setup(rank, W);
    spdlog::set_level(spdlog::level::warn);
    torch::set_num_threads(threads);
    torch::set_num_interop_threads(1);

    // ---- config: weak scaling, a fixed batch per rank ---------------------------------------
    auto cfg = launcher::load_config(config, overrides);
    cfg.train.micro_batch = micro_batch;
    cfg.train.seq_len = seq_len;
    cfg.train.global_batch = per_rank_batch * W;
    cfg.train.max_steps = 1 << 20;          // constant LR region does not matter for timing
    cfg.train.log_every = 1 << 20;          // no routing summaries inside timed steps
    cfg.train.eval_every = 0;
    cfg.parallel.expert_parallel = P;
    cfg.parallel.key_check_every = 0;       // the periodic checksum is not part of a step
    launcher::validate(cfg);
    if (per_rank_batch % micro_batch != 0) {
      throw ConfigError(fmt::format("--per-rank-batch {} must be a multiple of --micro-batch {}", per_rank_batch, micro_batch));
    }
    if (cfg.model.ffn == model::FfnKind::kSome && cfg.model.num_experts % P != 0) {
      throw ConfigError(fmt::format("P = {} must divide model.num_experts = {}", P, cfg.model.num_experts));
    }
    auto meta = launcher::ensure_dataset(data_dir, world_raw.get());  // rank 0 builds, then a barrier

    model::Transformer model(launcher::model_options(cfg, meta), &state);
    const int64_t n_layers_some = static_cast<int64_t>(model->some_layers().size());
    const double flops_per_token = model->flops_per_token(seq_len, true);
    const int64_t params_total = model->num_parameters(false), params_trainable = model->num_parameters(true);
    train::Trainer trainer(model, cfg.optim, cfg.train, meta, "", state, cfg.parallel);
    const int64_t n_micro = per_rank_batch / micro_batch;
    const int64_t E = cfg.model.num_experts, d = cfg.model.d_model;
    // The step's one routing-statistics buffer: every routed layer's step_statistics() (docs/design.md §3).
    int64_t key_numel = 0;
    for (auto* layer : model->routed_layers()) {
      std::vector<torch::Tensor> stats;
      layer->step_statistics(stats);
      for (auto& t : stats) key_numel += t.numel();
    }

    for (int s = 1; s <= warmup; ++s) trainer.train_step(s);

    // ---- timed steps ------------------------------------------------------------------------
    std::vector<double> m(kNumMetrics, 0.0);
    world_raw->barrier();
    world->reset();
    ep->reset();
    world->set_call_log(true);
    for (int s = warmup + 1; s <= warmup + steps; ++s) {
      auto t0 = Clock::now();
      const auto t = trainer.train_step(s).times;
      m[kStep] += std::chrono::duration<double>(Clock::now() - t0).count();
      m[kForward] += t.forward;
      m[kBackward] += t.backward;
      m[kGradPhase] += t.grad_allreduce;
      m[kOptimizer] += t.optimizer;
      m[kKeyPhase] += t.key_update;
    }
    world->set_call_log(false);

    auto a2a = ep->stats(CommOp::all_to_all);
    m[kA2aCalls] = a2a.calls;
    m[kA2aBytes] = a2a.bytes;
    m[kA2aSelfBytes] = a2a.self_bytes;
    m[kA2aS] = a2a.seconds;
    auto counts = ep->stats(CommOp::allgather);
    m[kCountsCalls] = counts.calls;
    m[kCountsBytes] = counts.bytes;
    m[kCountsS] = counts.seconds;
    for (CommOp op : {CommOp::allreduce, CommOp::broadcast, CommOp::barrier}) {  // none expected on EP
      auto s = ep->stats(op);
      m[kOtherCalls] += s.calls, m[kOtherBytes] += s.bytes, m[kOtherS] += s.seconds;
    }
    // World calls: classify the allreduces (async = gradient buckets; an fp32 buffer of the
    // routing statistics' size = routing state; the rest = control), everything else is "other".
    for (const auto& c : world->calls()) {
      if (c.op == CommOp::allreduce && c.async) {
        m[kGradCalls] += 1, m[kGradBytes] += c.bytes, m[kGradS] += c.seconds;
      } else if (c.op == CommOp::allreduce && c.dtype == torch::kFloat32 && c.numel == key_numel) {
        m[kKeyCalls] += 1, m[kKeyBytes] += c.bytes, m[kKeyS] += c.seconds;
      } else if (c.op == CommOp::allreduce) {
        m[kCtlCalls] += 1, m[kCtlBytes] += c.bytes, m[kCtlS] += c.seconds;
      } else {
        m[kOtherCalls] += 1, m[kOtherBytes] += c.bytes, m[kOtherS] += c.seconds;
      }
    }
    m[kOtherPhase] = m[kStep] - m[kForward] - m[kBackward] - m[kGradPhase] - m[kOptimizer] - m[kKeyPhase];
    m[kCommS] = m[kA2aS] + m[kCountsS] + m[kGradS] + m[kKeyS] + m[kCtlS] + m[kOtherS];
    for (auto& v : m) v /= steps;  // per step

    // ---- the same collectives in isolation (no compute, no skew): alpha-beta of this transport
    // Sizes: one all-to-all call of a micro-batch with uniform routing, one gradient bucket, the
    // step's routing statistics, and 8 bytes (latency).
    const int64_t k = cfg.model.top_k;
    const int64_t a2a_rows_per_peer = micro_batch * seq_len * k / P;
    const int64_t grad_numel = std::max<int64_t>(1, std::min<int64_t>(params_trainable, (4 << 20) / 4));
    std::vector<std::pair<std::string, std::pair<int64_t, double>>> isolated;  // name -> (bytes, seconds)
    if (W > 1) {
      const int reps = 21;
      for (auto [name, numel] : std::vector<std::pair<std::string, int64_t>>{
               {"allreduce_8B", 2}, {"allreduce_routing_statistics", key_numel}, {"allreduce_grad_bucket", grad_numel}}) {
        auto buf = torch::ones({numel}, torch::kFloat32);
        double sec = isolated_seconds(*world_raw, reps, [&] { world_raw->allreduce_sum(buf); });
        isolated.push_back({name, {numel * 4, sec}});
      }
      if (P > 1) {
        auto x = torch::ones({a2a_rows_per_peer * P, d}, torch::kFloat32);
        std::vector<int64_t> rows(P, a2a_rows_per_peer);
        double sec = isolated_seconds(*ep_raw, reps, [&] { ep_raw->all_to_all(x, rows, rows); });
        isolated.push_back({"all_to_all_micro_batch", {a2a_rows_per_peer * (P - 1) * d * 4, sec}});
        auto tiny = torch::ones({P, 1}, torch::kFloat32);
        std::vector<int64_t> one(P, 1);
        sec = isolated_seconds(*ep_raw, reps, [&] { ep_raw->all_to_all(tiny, one, one); });
        isolated.push_back({"all_to_all_4B_per_peer", {4 * (P - 1), sec}});
      }
    }
    for (const auto& entry : isolated) m.push_back(entry.second.second);  // after the step metrics

    // ---- reduce over ranks and report -------------------------------------------------------
    auto mine = torch::tensor(m, torch::kFloat64);
    auto all = world_raw->allgather(mine);  // (W, kNumMetrics + isolated)
    auto mx = std::get<0>(all.max(0)), mean = all.mean(0), mn = std::get<0>(all.min(0));
    auto comm_frac = (all.select(1, kCommS) / all.select(1, kStep));  // per rank
    double gemm_peak = 0;
    if (W == 1) gemm_peak = gemm_peak_flops(1024, 5);
    world_raw->barrier();
    if (rank != 0) return 0;

    auto MAX = [&](int i) { return mx[i].item<double>(); };
    auto MEAN = [&](int i) { return mean[i].item<double>(); };
    auto MIN = [&](int i) { return mn[i].item<double>(); };
    const int64_t tokens_per_rank = per_rank_batch * seq_len;
    const int64_t tokens = tokens_per_rank * W;
    const double step_s = MAX(kStep);
    const double tok_s = tokens / step_s;
    const double ring = W > 1 ? 2.0 * (W - 1) / W : 0.0;
    const unsigned hw = std::thread::hardware_concurrency();
    auto ms = [](double s) { return 1e3 * s; };
    nlohmann::json out = {
        {"benchmark", "parallel_weak_scaling"},
        {"world_size", W},
        {"expert_parallel", P},
        {"ep_groups", W / P},
        {"transport", world_raw->name()},
        {"threads_per_rank", threads},
        {"nproc", hw},
        {"oversubscribed", W * threads > static_cast<int>(hw)},
        {"config", config},
        {"model", {{"n_layers", cfg.model.n_layers}, {"some_layers", n_layers_some}, {"d_model", d},
                   {"num_experts", E}, {"top_k", cfg.model.top_k}, {"d_expert", cfg.model.d_expert},
                   {"query", choice_name(cfg.model.router.query)}, {"vocab_size", meta.vocab_size},
                   {"parameters_total", params_total}, {"parameters_trainable", params_trainable},
                   {"model_flops_per_token", flops_per_token}}},
        {"per_rank_sequences", per_rank_batch},
        {"micro_batch", micro_batch},
        {"micro_batches_per_step", n_micro},
        {"seq_len", seq_len},
        {"tokens_per_step", tokens},
        {"tokens_per_step_per_rank", tokens_per_rank},
        {"warmup_steps", warmup},
        {"steps_timed", steps},
        {"step_ms", ms(step_s)},
        {"step_ms_fastest_rank", ms(MIN(kStep))},
        {"tokens_per_s", tok_s},
        {"tokens_per_s_per_rank", tok_s / W},
        {"model_flops_per_s_per_rank", flops_per_token * tok_s / W},
        {"phase_ms", {{"forward", ms(MAX(kForward))},
                      {"backward", ms(MAX(kBackward))},
                      {"grad_allreduce", ms(MAX(kGradPhase))},
                      {"optimizer", ms(MAX(kOptimizer))},
                      {"key_update", ms(MAX(kKeyPhase))},
                      {"other", ms(MAX(kOtherPhase))}}},
        {"all_to_all", {{"calls_per_step", MAX(kA2aCalls)},
                        {"expected_calls_per_step", W > 1 && P > 1 ? 4 * n_layers_some * n_micro : 0},
                        {"bytes_sent_per_rank_per_step", MEAN(kA2aBytes)},
                        {"bytes_sent_max_rank", MAX(kA2aBytes)},
                        {"self_bytes_per_rank_per_step", MEAN(kA2aSelfBytes)},
                        {"ms_per_step", ms(MAX(kA2aS))},
                        {"ms_per_step_mean_rank", ms(MEAN(kA2aS))}}},
        {"dispatch_counts_allgather", {{"calls_per_step", MAX(kCountsCalls)},
                                       {"bytes_per_rank_per_step", MAX(kCountsBytes)},
                                       {"ms_per_step", ms(MAX(kCountsS))}}},
        {"grad_allreduce", {{"phase_ms_per_step", ms(MAX(kGradPhase))},
                            {"in_calls_ms_per_step", ms(MAX(kGradS))},
                            {"buckets_per_step", MAX(kGradCalls)},
                            {"bytes_per_step", MAX(kGradBytes)},
                            {"ring_wire_bytes_per_rank", ring * MAX(kGradBytes)}}},
        {"routing_allreduce", {{"ms_per_step", ms(MAX(kKeyS))},
                           {"calls_per_step", MAX(kKeyCalls)},
                           {"bytes_per_step", MAX(kKeyBytes)},
                           {"expected_calls_per_step", W > 1 ? 1 : 0},
                           {"expected_bytes_per_step", W > 1 ? 4.0 * key_numel : 0.0},
                           {"ring_wire_bytes_per_rank", ring * MAX(kKeyBytes)},
                           {"key_update_phase_ms", ms(MAX(kKeyPhase))}}},
        {"allreduce_calls_per_step", MAX(kKeyCalls) + MAX(kCtlCalls)},  // blocking ones; gradient buckets apart
        {"control_allreduce", {{"ms_per_step", ms(MAX(kCtlS))}, {"calls_per_step", MAX(kCtlCalls)},
                               {"bytes_per_step", MAX(kCtlBytes)}}},
        {"other_collectives", {{"ms_per_step", ms(MAX(kOtherS))}, {"calls_per_step", MAX(kOtherCalls)},
                               {"bytes_per_step", MAX(kOtherBytes)}}},
        {"comm_ms_per_step", ms(MAX(kCommS))},
        {"comm_ms_per_step_mean_rank", ms(MEAN(kCommS))},
        {"comm_fraction", comm_frac.max().item<double>()},
        {"comm_fraction_mean_rank", comm_frac.mean().item<double>()},
        {"compute_us_per_token", 1e6 * (MEAN(kStep) - MEAN(kCommS)) / tokens_per_rank},
    };
    nlohmann::json iso = nlohmann::json::object();
    for (size_t i = 0; i < isolated.size(); ++i) {
      const double sec = MAX(kNumMetrics + static_cast<int>(i));
      const auto bytes = isolated[i].second.first;
      iso[isolated[i].first] = {{"bytes_per_rank", bytes}, {"us", 1e6 * sec}, {"GB_per_s", bytes / sec / 1e9}};
    }
    out["isolated_collectives"] = iso;  // max over ranks of the best of 21 calls, barrier before each
    if (W > 1) {
      // Alpha-beta fit of the isolated calls (alpha: the tiny call; beta: the large one), applied
      // to this step's calls: the communication time the step would have with no waiting.
      auto fit = [&](const char* tiny, const char* big) {
        const double a = iso[tiny]["us"].get<double>() * 1e-6, t = iso[big]["us"].get<double>() * 1e-6;
        const double b = iso[big]["bytes_per_rank"].get<double>() / std::max(t - a, 0.5 * t);
        return std::make_pair(a, b);
      };
      auto [ar_a, ar_b] = fit("allreduce_8B", "allreduce_grad_bucket");
      double est = 0;
      for (auto [calls, bytes] : {std::pair{kGradCalls, kGradBytes}, {kKeyCalls, kKeyBytes}, {kCtlCalls, kCtlBytes}}) {
        est += MAX(calls) * ar_a + MAX(bytes) / ar_b;
      }
      nlohmann::json model = {{"allreduce_alpha_us", 1e6 * ar_a}, {"allreduce_beta_GB_per_s", ar_b / 1e9}};
      if (P > 1) {
        auto [a2a_a, a2a_b] = fit("all_to_all_4B_per_peer", "all_to_all_micro_batch");
        est += MAX(kA2aCalls) * a2a_a + MAX(kA2aBytes) / a2a_b + MAX(kCountsCalls) * a2a_a;
        model["all_to_all_alpha_us"] = 1e6 * a2a_a;
        model["all_to_all_beta_GB_per_s"] = a2a_b / 1e9;
      }
      model["comm_ms_per_step"] = ms(est);
      model["comm_fraction"] = est / step_s;
      out["alpha_beta_estimate"] = model;  // vs comm_ms_per_step measured in the step (incl. waiting)
    }
    if (W == 1) {
      out["gemm_peak_fp32_flops"] = gemm_peak;
      out["gemm_peak_shape"] = "1024x1024x1024";
      out["fraction_of_gemm_peak"] = flops_per_token * tok_s / gemm_peak;
    }
    std::cout << out.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "[bench_parallel] rank " << rank << ": " << e.what() << std::endl;
    if (mpi.active()) parallel::MpiRuntime::abort(1);
    return 1;
  }
}
