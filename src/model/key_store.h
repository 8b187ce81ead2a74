#pragma once
// The key store of one SoME layer: one plastic key per expert, the usage statistics, the
// routing decision (scores -> top-k -> gates) and Knowledge Gravity (docs/design.md §1 steps 2-4, §3).
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>
#include <optional>

#include <torch/torch.h>

#include "parallel/communicator.h"
#include "src/model/options.h"
#include "src/model/router.h"

namespace some::model {

// The statistics Knowledge Gravity consumes, summed over every token of an optimizer step
// (docs/design.md §3). n, S and C are views into one flat fp32 buffer so that a multi-rank run reduces
// them with a single allreduce.
class GravityStats {
 public:
  GravityStats(int64_t E, int64_t d, torch::TensorOptions opts);
  void add(const Routing& r);  // no grad; counts each token once (S only when r.queries is defined)
  void zero() { flat_.zero_(); }
  torch::Tensor& flat() { return flat_; }   // (E + E*d + E*E,) the allreduce buffer
  const torch::Tensor& n() const { return n_; }   // (E,)   selections
  const torch::Tensor& S() const { return S_; }   // (E, d) query sums
  const torch::Tensor& C() const { return C_; }   // (E, E) co-activation counts, zero diagonal

 private:
  int64_t E_, d_;
  torch::Tensor flat_, n_, S_, C_;
  torch::Tensor off_diag_;  // (k (k - 1),) flat indices a*k + b, a != b, of a token's selection pairs
  void make_views();
};

// One Knowledge Gravity update, in place, on fp32 keys (E, d) and usage (E,), from reduced
// statistics. Jacobi order: every force reads the keys from before the update.
// Returns the mask (E,) of keys that were decayed.
torch::Tensor knowledge_gravity(torch::Tensor& keys, torch::Tensor& usage, const torch::Tensor& n,
                                const torch::Tensor& S, const torch::Tensor& C, int64_t top_k,
                                const GravityOptions& g);

// router.score, parsed once when the key store is built (not at every forward).
enum class ScoreFunction { kCosine, kDot };
ScoreFunction parse_score_function(const std::string& name);  // ConfigError naming the key otherwise

// Scores (N, E) of queries q (N, d) against keys (E, d).
torch::Tensor routing_scores(const torch::Tensor& q, const torch::Tensor& keys, ScoreFunction score);

// Top-k of the scores (stable_top_k), gates = softmax(clamp(s / tau, -c, c)) with
// tau = router.temperature and c = router.logit_clamp. With `log_scale` (1,) (router.gate_scale = learnable)
// the logits are s * exp(min(log_scale, log max_scale)) instead; with `selection_bias` (E,)
// (router.balance = bias) the top-k is of scores + bias, the gates still of the scores alone.
Routing route(const torch::Tensor& q, const torch::Tensor& keys, int64_t top_k, ScoreFunction score,
              const RouterOptions& r, const torch::Tensor& log_scale = {},
              const torch::Tensor& selection_bias = {});

// k-means++ seeding (D^2 sampling, Arthur & Vassilvitskii 2007) of min(k, P) centres among the
// unit vectors `points` (P, d), then `rounds` of spherical Lloyd (assign by cosine, centre = the
// normalised mean; an empty cluster keeps its centre). Deterministic in `seed`; computed on the
// CPU in fp64. Returns unit centres (min(k, P), d) fp32.
torch::Tensor kmeans_plus_plus(const torch::Tensor& points, int64_t k, uint64_t seed, int rounds);

// Owns the keys and usage of one layer (the tensors are registered as buffers by the layer
// that holds this store, so save/load and .to(device) see them), the statistics of the current
// optimizer step, and the update. Every rank holds an identical replica.
class KeyStore {
 public:
  KeyStore(torch::Tensor keys, torch::Tensor usage, int64_t top_k, RouterOptions router,
           GravityOptions gravity);
  // The router options' tensors, registered by the layer: the learned gate log-scale (1,)
  // (router.gate_scale = learnable) and the selection bias (E,) (router.balance = bias).
  void set_gate_log_scale(torch::Tensor log_scale) { log_scale_ = std::move(log_scale); }
  void set_selection_bias(torch::Tensor bias) { selection_bias_ = std::move(bias); }

  Routing route(const torch::Tensor& q) const;        // q (N, d) -> routing of N tokens
  void accumulate(const Routing& r);                   // adds to this step's statistics
  GravityStats& stats();                               // this step's n, S, C
  torch::Tensor& top1_sum();                           // (1,) sum of this step's top-1 scores
  // Applies Knowledge Gravity with this step's (already reduced) statistics, then clears them.
  // `restart_seed` and the restart pool gathered over `world` (null: one process) make the
  // dead-key restart identical on every rank.
  void apply_gravity(uint64_t restart_seed, parallel::Communicator* world = nullptr);
  // router.key_init = data, after the first step instead of Knowledge Gravity: the keys become
  // k-means++ centres of this step's query pool (gathered over `world`, so identical on every
  // rank and for any world size); the statistics restart.
  void init_keys_from_queries(uint64_t seed, parallel::Communicator* world = nullptr);

  // Mean top-1 score of the tokens accumulated this step (before apply_gravity clears it); over
  // the global batch once stats() and top1_sum() are summed over the ranks.
  double mean_top1_score() const;

  const torch::Tensor& keys() const { return keys_; }
  const torch::Tensor& usage() const { return usage_; }

 private:
  torch::Tensor keys_, usage_;   // (E, d), (E,) fp32
  int64_t top_k_;
  RouterOptions router_;
  ScoreFunction score_;
  GravityOptions gravity_;
  std::optional<GravityStats> stats_;
  torch::Tensor top1_sum_;  // (1,) sum of top-1 scores this step, for the log line
  // Every rank's pool, in rank order (one process: unchanged).
  void gather_pool(parallel::Communicator* world);
  void clear_step();

  torch::Tensor log_scale_, selection_bias_;  // undefined unless their option is on
  // About kRestartPool normalised queries per micro-batch of this step with their top-1 expert:
  // the pool a dead key is re-seeded from (gravity.restart_below); for k-means key
  // initialisation, about kInitPoolPerExpert per expert.
  static constexpr int64_t kRestartPool = 256, kInitPoolPerExpert = 16;
  bool init_pending_;  // router.key_init = data and the keys not yet initialised by this process
  torch::Tensor pool_q_, pool_top1_;
};

}  // namespace some::model
