// Exact vs approximate key search as E grows (router.search, docs/design.md §3; src/model/key_index.h): one
// SoME layer's routing of --tokens queries to their top-k of E keys, per method:
//   exact         scores against every key + stable_top_k, as route() in src/model/key_store.cpp
//   ivf           FAISS IndexIVFFlat, L = 4 sqrt(E) k-means lists, --ivf-probe lists scanned
//   hnsw          FAISS IndexHNSWFlat (M, efSearch), rebuilt after every step (hnsw_rebuild_every = 1)
//   hnsw_inplace  the same graph, moved keys overwritten in place, rebuilt every --hnsw-rebuild-every steps
// One JSON line per (E, method):
//   recall_at_k            |ANN top-k ∩ exact top-k| / (N k), on the keys after one simulated step
//   score_ratio            mean over tokens of (sum of the found keys' scores / sum of the exact top-k's)
//   routing_us_per_token   search only (best of --repeats, after a warm-up): exact = scores + top-k
//   build_s                build() from scratch (IVF: k-means + lists; HNSW: single-threaded insertion)
//   update_s               update() after one simulated Knowledge Gravity step; hnsw_inplace also
//                          step_s = ((R - 1) update_s + build_s) / R, the rebuild amortised
//   us_per_token_with_update  routing_us_per_token + step cost / --tokens (one step routes N tokens)
//   speedup_vs_exact       exact's us per token / us_per_token_with_update
// and a final line {"summary": ...} with, per ANN method, the crossover: the smallest E from which
// on it costs --min-speedup (1.1) times less per token than exact search, update included, at
// recall_at_k >= --min-recall (0.9).
//
// The data (say "how" in one line: printed as "data"): C = E / --cluster-size random unit centres;
// key i = normalize(centre[i / cluster-size] + s g / sqrt(d)), s = --key-spread, g ~ N(0, I) (trained
// SoME keys cluster: Knowledge Gravity pulls co-selected keys together); query t = normalize(K_a +
// --query-noise g / sqrt(d)) for a uniformly drawn key a, so its top-1 is a and its top-2 a
// cluster mate. --cluster-size 1: uniform random keys (the initialisation, and the worst case).
// One step moves --moved-fraction of the keys (default: the expected share of keys hit by N k
// uniform selections, 1 - (1 - 1/E)^(N k)) by K_i += 0.01 (q_i - K_i) (gravity.alpha), q_i a query
// near K_i.
// HNSW builds single-threaded; where the build would take longer than --hnsw-max-build-s
// (extrapolated from the previous E as E log E) it is timed on a prefix of E / 8 keys and reported
// as "skipped" with that partial time and the extrapolation.
//
//   OMP_NUM_THREADS=1 build/bin/bench_key_search [--experts 1024,4096,16384,65536] [--d 256]
//       [--top-k 2] [--tokens 4096] [--methods exact,ivf,hnsw,hnsw_inplace] [--moved-fraction F]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "src/model/key_index.h"
#include "src/model/key_store.h"
#include "src/model/router.h"

using namespace some;
using Clock = std::chrono::steady_clock;
namespace F = torch::nn::functional;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

torch::Tensor unit_rows(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(1)); }

struct Data {
  torch::Tensor keys, keys_after, moved, queries;  // (E, d), (E, d), (M,), (N, d)
};

Data make_data(int64_t E, int64_t d, int64_t N, int64_t cluster_size, double spread, double noise,
               double moved_fraction, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto C = std::max<int64_t>(1, E / cluster_size);
  auto centres = unit_rows(torch::randn({C, d}, gen));
  auto of = torch::arange(E).div(cluster_size, "floor").clamp_max(C - 1);
  Data out;
  out.keys = unit_rows(centres.index_select(0, of) + spread / std::sqrt(double(d)) * torch::randn({E, d}, gen));
  auto near = [&](const torch::Tensor& ids) {
    return unit_rows(out.keys.index_select(0, ids) + noise / std::sqrt(double(d)) * torch::randn({ids.size(0), d}, gen));
  };
  out.queries = near(torch::randint(E, {N}, gen));
  const auto M = std::clamp<int64_t>(std::llround(moved_fraction * E), 0, E);
  out.moved = std::get<0>(torch::randperm(E, gen).narrow(0, 0, M).sort());
  out.keys_after = out.keys.clone();
  out.keys_after.index_copy_(0, out.moved, out.keys.index_select(0, out.moved) * 0.99 + 0.01 * near(out.moved));
  return out;
}

torch::Tensor exact_route(const torch::Tensor& q, const torch::Tensor& keys, int64_t k) {
  return model::stable_top_k(model::routing_scores(q, keys, model::ScoreFunction::kCosine), k);
}

// Mean over tokens of (sum of the found keys' scores) / (sum of the exact top-k's): what a missed
// key costs the gates (a missed near tie costs ~nothing); a -1 slot scores 0.
double score_ratio(const torch::Tensor& scores, const torch::Tensor& found, const torch::Tensor& exact) {
  auto got = scores.gather(1, found.clamp_min(0)).masked_fill(found < 0, 0.0).sum(1);
  return (got / scores.gather(1, exact).sum(1)).mean().item<double>();
}

double recall(const torch::Tensor& found, const torch::Tensor& exact) {
  return (found.unsqueeze(2) == exact.unsqueeze(1)).any(1).sum().item<double>() / double(exact.numel());
}

template <typename Fn>
double best_of(int64_t repeats, Fn fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int64_t r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    fn();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> experts = {1024, 4096, 16384, 65536};
  std::vector<std::string> methods = {"exact", "ivf", "hnsw", "hnsw_inplace"};
  int64_t d = 256, top_k = 2, tokens = 4096, repeats = 3, cluster_size = 16, ivf_probe = 8, hnsw_m = 32,
          hnsw_ef_search = 64, hnsw_rebuild_every = 16;
  double moved_fraction = -1, key_spread = 1.0, query_noise = 0.5, min_recall = 0.9, min_speedup = 1.1,
         hnsw_max_build_s = 60;
  uint64_t seed = 1;
  CLI::App app("Exact vs ANN (FAISS IVF / HNSW) key search per token as E grows");
  app.add_option("--experts", experts, "E values")->delimiter(',');
  app.add_option("--methods", methods, "exact, ivf, hnsw, hnsw_inplace")->delimiter(',');
  app.add_option("--d", d, "key width");
  app.add_option("--top-k", top_k, "k");
  app.add_option("--tokens", tokens, "N queries routed per step");
  app.add_option("--repeats", repeats, "timed searches (best of)");
  app.add_option("--moved-fraction", moved_fraction, "keys moved by one step (default: 1 - (1 - 1/E)^(N k))");
  app.add_option("--cluster-size", cluster_size, "keys per cluster (1: uniform random keys)");
  app.add_option("--key-spread", key_spread, "key noise around its cluster centre");
  app.add_option("--query-noise", query_noise, "query noise around its key");
  app.add_option("--ivf-probe", ivf_probe, "IVF lists scanned per query");
  app.add_option("--hnsw-m", hnsw_m, "HNSW links per node");
  app.add_option("--hnsw-ef-search", hnsw_ef_search, "HNSW candidate list at search");
  app.add_option("--hnsw-rebuild-every", hnsw_rebuild_every, "hnsw_inplace: rebuild every R steps");
  app.add_option("--hnsw-max-build-s", hnsw_max_build_s, "skip an HNSW build predicted to take longer");
  app.add_option("--min-recall", min_recall, "recall an ANN method needs to count in the crossover");
  app.add_option("--min-speedup", min_speedup, "how much faster than exact counts as winning (timing noise)");
  app.add_option("--seed", seed, "data seed");
  CLI11_PARSE(app, argc, argv);
  torch::NoGradGuard no_grad;

  for (const auto& m : methods) {
    if (m != "exact" && m != "ivf" && m != "hnsw" && m != "hnsw_inplace") {
      std::cerr << "unknown method " << m << "\n";
      return 2;
    }
    if (m != "exact" && !model::key_search_available(model::KeySearch::kIvf)) {
      std::cerr << "method " << m << " needs a build with FAISS (libfaiss-dev)\n";
      return 2;
    }
  }
  std::cout << nlohmann::json({{"bench", "key_search"},
                               {"data", fmt::format("keys: E/{} random unit centres + {} N(0,I/d), normalised; "
                                                    "queries: a random key + {} N(0,I/d), normalised",
                                                    cluster_size, key_spread, query_noise)},
                               {"threads", torch::get_num_threads()}})
                   .dump()
            << std::endl;

  std::map<std::string, std::map<int64_t, double>> cost;  // method -> E -> us per token (with update)
  std::map<std::string, std::map<int64_t, double>> recall_of;
  double last_hnsw_build_s = -1;
  int64_t last_hnsw_E = 0;
  for (auto E : experts) {
    const double fraction = moved_fraction >= 0 ? moved_fraction : 1.0 - std::pow(1.0 - 1.0 / E, double(tokens * top_k));
    auto data = make_data(E, d, tokens, cluster_size, key_spread, query_noise, fraction, seed + E);
    auto scores_after = model::routing_scores(data.queries, data.keys_after, model::ScoreFunction::kCosine);  // (N, E)
    auto exact_after = model::stable_top_k(scores_after, top_k);
    for (const auto& method : methods) {
      nlohmann::json line = {{"bench", "key_search"}, {"method", method}, {"E", E}, {"d", d}, {"top_k", top_k},
                             {"tokens", tokens}, {"moved", data.moved.size(0)}, {"threads", torch::get_num_threads()}};
      if (method == "exact") {
        const double s = best_of(repeats, [&] { exact_route(data.queries, data.keys_after, top_k); });
        line["recall_at_k"] = 1.0;
        line["routing_us_per_token"] = s * 1e6 / tokens;
        line["build_s"] = 0.0;
        line["update_s"] = 0.0;
        line["us_per_token_with_update"] = s * 1e6 / tokens;
        cost[method][E] = s * 1e6 / tokens;
        recall_of[method][E] = 1.0;
        std::cout << line.dump() << std::endl;
        continue;
      }
      model::KeyIndexOptions o;
      o.kind = method == "ivf" ? model::KeySearch::kIvf : model::KeySearch::kHnsw;
      o.ivf_probe = ivf_probe;
      o.hnsw_m = hnsw_m;
      o.hnsw_ef_search = hnsw_ef_search;
      o.hnsw_rebuild_every = method == "hnsw_inplace" ? hnsw_rebuild_every : 1;
      o.seed = seed;
      if (o.kind == model::KeySearch::kHnsw) {
        line["hnsw_m"] = hnsw_m;
        line["hnsw_ef_search"] = hnsw_ef_search;
        line["hnsw_ef_construction"] = o.hnsw_ef_construction;
        if (method == "hnsw_inplace") line["hnsw_rebuild_every"] = hnsw_rebuild_every;
        const double predicted = last_hnsw_build_s < 0 ? 0
            : last_hnsw_build_s * (double(E) * std::log(double(E))) / (double(last_hnsw_E) * std::log(double(last_hnsw_E)));
        if (predicted > hnsw_max_build_s) {
          // Timed on a prefix of E / 8 keys, extrapolated as E log E.
          const auto prefix = E / 8;
          auto index = model::KeyIndex::make(o, d);
          auto t0 = Clock::now();
          index->build(data.keys.narrow(0, 0, prefix));
          const double partial = seconds_since(t0);
          line["skipped"] = fmt::format("build predicted over --hnsw-max-build-s = {} s", hnsw_max_build_s);
          line["partial_build_keys"] = prefix;
          line["partial_build_s"] = partial;
          line["build_s_estimated"] = partial * (double(E) * std::log(double(E))) / (double(prefix) * std::log(double(prefix)));
          std::cout << line.dump() << std::endl;
          continue;
        }
      } else {
        line["ivf_lists"] = std::llround(4.0 * std::sqrt(double(E)));
        line["ivf_probe"] = ivf_probe;
      }
      auto index = model::KeyIndex::make(o, d);
      auto t0 = Clock::now();
      index->build(data.keys);
      const double build_s = seconds_since(t0);
      if (o.kind == model::KeySearch::kHnsw) {
        last_hnsw_build_s = build_s;
        last_hnsw_E = E;
      }
      line["recall_at_k_before_update"] = recall(index->search(data.queries, top_k), exact_route(data.queries, data.keys, top_k));
      t0 = Clock::now();
      index->update(data.keys_after, data.moved);
      const double update_s = seconds_since(t0);
      torch::Tensor found;
      const double s = best_of(repeats, [&] { found = index->search(data.queries, top_k); });
      const double r = recall(found, exact_after);
      double step_s = update_s;
      if (method == "hnsw_inplace") {
        step_s = ((hnsw_rebuild_every - 1) * update_s + build_s) / hnsw_rebuild_every;
        line["step_s"] = step_s;
      }
      line["recall_at_k"] = r;
      line["score_ratio"] = score_ratio(scores_after, found, exact_after);
      line["routing_us_per_token"] = s * 1e6 / tokens;
      line["build_s"] = build_s;
      line["update_s"] = update_s;
      line["us_per_token_with_update"] = (s + step_s) * 1e6 / tokens;
      if (cost["exact"].count(E)) line["speedup_vs_exact"] = cost["exact"][E] / ((s + step_s) * 1e6 / tokens);
      cost[method][E] = (s + step_s) * 1e6 / tokens;
      recall_of[method][E] = r;
      std::cout << line.dump() << std::endl;
    }
  }

  // The crossover: the smallest E from which on (at every larger E measured too) the method is at
  // least --min-speedup times faster than exact search at the recall bar.
  nlohmann::json crossover = nlohmann::json::object();
  for (const auto& method : methods) {
    if (method == "exact") continue;
    nlohmann::json at = nullptr;
    for (auto it = experts.rbegin(); it != experts.rend(); ++it) {
      const auto E = *it;
      const bool wins = cost[method].count(E) && cost["exact"].count(E) && recall_of[method][E] >= min_recall &&
                        cost["exact"][E] >= min_speedup * cost[method][E];
      if (!wins) break;
      at = E;
    }
    crossover[method] = at;
  }
  std::cout << nlohmann::json({{"bench", "key_search"}, {"summary", true}, {"min_recall", min_recall},
                               {"tokens_per_step", tokens}, {"crossover_E", crossover},
                               {"min_speedup", min_speedup},
                               {"rule", "smallest E from which on routing_us_per_token + step update / tokens is at "
                                        "least min_speedup x below exact's, at recall_at_k >= min_recall (null: "
                                        "not within --experts)"}})
                   .dump()
            << std::endl;
  return 0;
}
