#pragma once
// The key store of one SoME layer: one plastic key per expert, the usage statistics, the
// routing decision (scores -> top-k -> gates) and Knowledge Gravity (docs/design.md §1 steps 2-4, §3).
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>
#include <memory>
#include <optional>

#include <torch/torch.h>

#include "parallel/communicator.h"
#include "src/model/key_index.h"
#include "src/model/options.h"
#include "src/model/router.h"

namespace some::model {

// gravity.peer_stats: what a step's statistics carry for the peer pull (docs/design.md §3).
// kAuto resolves to the peer sums when E > d (then E x d is smaller than E x E), else the counts.
PeerStats resolve_peer_stats(PeerStats option, int64_t E, int64_t d);

// The statistics Knowledge Gravity consumes, summed over every token of an optimizer step
// (docs/design.md §3): n (E,), S (E, d), and for the peer pull either the co-activation counts
// C (E, E) or the peer sums P = C K (E, d). They are views into one flat fp32 buffer so that a
// multi-rank run reduces them with a single allreduce. P is exact because every rank routes with
// the same keys during a step: P_i = sum over the tokens that selected i of their other selected keys.
class GravityStats {
 public:
  GravityStats(int64_t E, int64_t d, torch::TensorOptions opts, PeerStats peer = PeerStats::kCoactivation);
  // No grad; counts each token once (S only when r.queries is defined). `keys` (E, d), the keys
  // the tokens were routed with, is needed for peer sums.
  void add(const Routing& r, const torch::Tensor& keys = {});
  void zero() { flat_.zero_(); }
  torch::Tensor& flat() { return flat_; }   // (E + E*d + E*E,) or (E + 2*E*d,): the allreduce buffer
  PeerStats peer_stats() const { return peer_; }
  const torch::Tensor& n() const { return n_; }   // (E,)   selections
  const torch::Tensor& S() const { return S_; }   // (E, d) query sums
  const torch::Tensor& C() const;                 // (E, E) co-activation counts, zero diagonal (kCoactivation)
  // (E, d) peer sums: C K with the given keys, or the accumulated P (kPeerSum, `keys` unused).
  torch::Tensor peer_sums(const torch::Tensor& keys) const;

 private:
  int64_t E_, d_;
  PeerStats peer_;
  torch::Tensor flat_, n_, S_, C_, P_;
  torch::Tensor off_diag_;  // (k (k - 1),) flat indices a*k + b, a != b, of a token's selection pairs
  void make_views();
};

// One Knowledge Gravity update, in place, on fp32 keys (E, d) and usage (E,), from reduced
// statistics: selections n (E,), query sums S (E, d), peer sums P = C K (E, d), each expert's peer
// count being c_i = (k - 1) n_i. Jacobi order: every force reads the keys from before the update.
// Returns the mask (E,) of keys that were decayed.
torch::Tensor knowledge_gravity(torch::Tensor& keys, torch::Tensor& usage, const torch::Tensor& n,
                                const torch::Tensor& S, const torch::Tensor& P, int64_t top_k,
                                const GravityOptions& g);

// Scores (N, E) of queries q (N, d) against keys (E, d).
torch::Tensor routing_scores(const torch::Tensor& q, const torch::Tensor& keys, ScoreFunction score);

// Top-k of the scores (stable_top_k), gates = softmax(clamp(s / tau, -c, c)) with
// tau = router.temperature and c = router.logit_clamp. With `log_scale` (1,) (router.gate_scale = learnable)
// the logits are s * exp(min(log_scale, log max_scale)) instead; with `selection_bias` (E,)
// (router.balance = bias) the top-k is of scores + bias, the gates still of the scores alone.
// With `chosen` (N, k) the experts were already found (router.search = hnsw | ivf): only their k
// scores are computed, and the k are re-ordered best first by those exact scores.
Routing route(const torch::Tensor& q, const torch::Tensor& keys, int64_t top_k, ScoreFunction score,
              const RouterOptions& r, const torch::Tensor& log_scale = {},
              const torch::Tensor& selection_bias = {}, const torch::Tensor& chosen = {});

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
  // router.search = ivf: the layer's registered buffer (L, d) for the index's centres, so that a
  // checkpoint holds them and a resumed run's index is the one it left (all zero: not yet trained).
  void set_index_state(torch::Tensor state) { index_state_ = std::move(state); }

  Routing route(const torch::Tensor& q) const;        // q (N, d) -> routing of N tokens
  void accumulate(const Routing& r);                   // adds to this step's statistics
  GravityStats& stats();                               // this step's n, S and C or P
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
  PeerStats peer_stats_;
  std::optional<GravityStats> stats_;
  torch::Tensor top1_sum_;  // (1,) sum of top-1 scores this step, for the log line
  // Every rank's pool, in rank order (one process: unchanged).
  void gather_pool(parallel::Communicator* world);
  void clear_step();

  torch::Tensor log_scale_, selection_bias_;  // undefined unless their option is on
  // router.search = hnsw | ivf: the nearest-neighbour index over the keys (CPU, fp32). Rebuilt from
  // the keys whenever they changed outside apply_gravity — a checkpoint load, a device move, the
  // k-means initialisation: the keys tensor's version counter tells — and updated with the keys
  // that moved after each Knowledge Gravity step. Every rank holds the same keys and applies the same
  // calls, so every rank holds the same index and routes a token alike.
  mutable std::unique_ptr<KeyIndex> index_;
  mutable int64_t index_version_ = -1;
  torch::Tensor index_state_;  // (L, d) ivf centres buffer; undefined for hnsw
  void sync_index() const;
  // About kRestartPool normalised queries per micro-batch of this step with their top-1 expert:
  // the pool a dead key is re-seeded from (gravity.restart_below); for k-means key
  // initialisation, about kInitPoolPerExpert per expert.
  static constexpr int64_t kRestartPool = 256, kInitPoolPerExpert = 16;
  bool init_pending_;  // router.key_init = data and the keys not yet initialised by this process
  torch::Tensor pool_q_, pool_top1_;
};

}  // namespace some::model
