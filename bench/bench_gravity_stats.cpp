// What the key store costs per optimizer step as E grows (docs/design.md §3): one SoME
// layer's key store routes `--micro-batches` micro-batches of `--tokens` random queries, accumulates
// Knowledge Gravity's statistics, allreduces them (MPI under `mpirun -np W`, else a no-op) and applies
// the update — with gravity.peer_stats = coactivation (n, S, C: E + E d + E^2 floats) and peer_sum
// (n, S, P = C K: E + 2 E d floats). One JSON line per (E, peer_stats), rank 0 prints:
//   stats_bytes      the allreduce payload per step and layer
//   *_ms             best of --steps timed steps (after one warm-up step), host wall time, max over ranks
//   peak_extra_mib   the rise of the process's peak RSS during that configuration (VmHWM, reset
//                    through /proc/self/clear_refs before it) over its RSS before it
//   max_key_diff     peer_sum only: max |K_peer_sum - K_coactivation| after the same steps on the same
//                    queries (the two must agree to ~1e-6), when the coactivation run fitted
// A configuration whose C would exceed --max-stats-gib is reported as skipped, with its size.
//
//   build/bin/bench_gravity_stats [--experts 1024,4096,16384,65536] [--d 256] [--top-k 2]
//                                 [--tokens 2048] [--micro-batches 4] [--steps 3]
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "parallel/mpi_communicator.h"
#include "parallel/parallel_state.h"
#include "src/model/key_store.h"

using namespace some;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// VmRSS or VmHWM of this process in MiB (Linux).
double proc_status_mib(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  }
  return -1;
}

void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

struct Timing {
  double route = 1e30, accumulate = 1e30, allreduce = 1e30, gravity = 1e30, total = 1e30;
};

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiRuntime mpi(&argc, &argv);
  std::vector<int64_t> experts = {1024, 4096, 16384, 65536};
  int64_t d = 256, top_k = 2, tokens = 2048, micro_batches = 4, steps = 3;
  double max_stats_gib = 2.0;
  CLI::App app("Key-store statistics per step vs E: co-activation counts vs peer sums");
  app.add_option("--experts", experts, "E values")->delimiter(',');
  app.add_option("--d", d, "model width (key dimension)");
  app.add_option("--top-k", top_k, "k");
  app.add_option("--tokens", tokens, "tokens per micro-batch");
  app.add_option("--micro-batches", micro_batches, "micro-batches per step");
  app.add_option("--steps", steps, "timed steps (best of)");
  app.add_option("--max-stats-gib", max_stats_gib, "skip a configuration whose statistics exceed this");
  CLI11_PARSE(app, argc, argv);
  torch::NoGradGuard no_grad;

  auto state = mpi.active() ? parallel::ParallelState::from_mpi(1) : parallel::ParallelState::single_process();
  auto& world = state.world();
  const bool root = world.rank() == 0;
  auto max_over_ranks = [&](double v) {
    auto all = world.allgather(torch::tensor({v}, torch::kFloat64));
    return all.max().item<double>();
  };

  for (auto E : experts) {
    torch::Tensor coactivation_keys;
    for (const char* mode : {"coactivation", "peer_sum"}) {
      const double peer_floats = std::string(mode) == "coactivation" ? double(E) * E : double(E) * d;
      const double stats_bytes = 4.0 * (E + double(E) * d + peer_floats);
      nlohmann::json line = {{"bench", "gravity_stats"}, {"E", E},           {"d", d},
                             {"top_k", top_k},           {"peer_stats", mode}, {"world", world.world_size()},
                             {"tokens_per_step", tokens * micro_batches * world.world_size()},
                             {"stats_bytes", stats_bytes}, {"threads", torch::get_num_threads()}};
      if (stats_bytes > max_stats_gib * (1 << 30)) {
        line["skipped"] = "statistics exceed --max-stats-gib";
        if (root) std::cout << line.dump() << std::endl;
        continue;
      }
      const double rss_before = proc_status_mib("VmRSS");
      reset_peak_rss();
      model::GravityOptions g;
      g.peer_stats = parse_choice<model::PeerStats>("gravity.peer_stats", mode);
      torch::manual_seed(7);
      auto keys = torch::randn({E, d});
      model::KeyStore store(keys, torch::ones({E}), top_k, model::RouterOptions(), g);
      // The same queries in both modes; each rank its own.
      auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + world.rank());
      Timing best;
      for (int64_t step = 0; step <= steps; ++step) {
        Timing t{0, 0, 0, 0, 0};
        const auto t_step = Clock::now();
        for (int64_t m = 0; m < micro_batches; ++m) {
          auto q = torch::randn({tokens, d}, gen, torch::kFloat32);
          auto t0 = Clock::now();
          auto r = store.route(q);                                       // (N, E) scores -> top-k
          t.route += ms_since(t0);
          t0 = Clock::now();
          store.accumulate(r);
          t.accumulate += ms_since(t0);
        }
        auto t0 = Clock::now();
        world.allreduce_sum(store.stats().flat());
        t.allreduce = ms_since(t0);
        t0 = Clock::now();
        store.apply_gravity(static_cast<uint64_t>(step));
        t.gravity = ms_since(t0);
        t.total = ms_since(t_step);
        if (step == 0) continue;  // warm-up
        best.route = std::min(best.route, t.route);
        best.accumulate = std::min(best.accumulate, t.accumulate);
        best.allreduce = std::min(best.allreduce, t.allreduce);
        best.gravity = std::min(best.gravity, t.gravity);
        best.total = std::min(best.total, t.total);
      }
      line["route_ms"] = max_over_ranks(best.route);
      line["accumulate_ms"] = max_over_ranks(best.accumulate);
      line["allreduce_ms"] = max_over_ranks(best.allreduce);
      line["gravity_ms"] = max_over_ranks(best.gravity);
      line["step_ms"] = max_over_ranks(best.total);
      line["stats_share_of_step"] = (best.accumulate + best.allreduce + best.gravity) / best.total;
      line["peak_extra_mib"] = max_over_ranks(proc_status_mib("VmHWM") - rss_before);
      if (std::string(mode) == "coactivation") {
        coactivation_keys = store.keys().clone();
      } else if (coactivation_keys.defined()) {
        line["max_key_diff"] = (store.keys() - coactivation_keys).abs().max().item<double>();
      }
      if (root) std::cout << line.dump() << std::endl;
    }
  }
  return 0;
}
