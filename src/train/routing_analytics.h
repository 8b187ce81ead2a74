#pragma once
// Routing analytics per SoME layer (docs/design.md §9): load balance (Gini, entropy), dead experts,
// confidence (top-1 score), key geometry (norm, pairwise cosine) and churn between evals.
//
// Legend: E experts, d model width, N evaluated tokens.
#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "parallel/communicator.h"

namespace some::train {

double gini(const torch::Tensor& counts);             // 0 = perfectly even, -> 1 = one expert
double entropy_nats(const torch::Tensor& counts);     // Shannon entropy of counts / sum
double mean_pairwise_cosine(const torch::Tensor& keys);  // over i != j

struct LayerRouting {
  int64_t layer = 0;
  double gini = 0, entropy = 0, entropy_norm = 0, top1_score = 0, key_norm = 0, key_cos = 0;
  int64_t dead_experts = 0;
  bool has_keys = true;         // SoME layers; the baselines' routers have no keys or scores
  std::optional<double> churn;  // fraction of tokens whose top-1 expert changed since last eval
  nlohmann::json to_json() const;
};

// counts (E,) selections, keys (E, d) (undefined: a router without keys), mean top-1 score.
LayerRouting summarize_routing(int64_t layer, const torch::Tensor& counts, const torch::Tensor& keys,
                               double top1_score);

// Above this E the eval's co-activation is kept as its strongest pairs (CoactivationPairs), not
// as a dense E x E matrix (64 MiB at 4096 experts, 16 GiB at 65,536).
constexpr int64_t kDenseCoactivationMaxExperts = 4096;

// Co-activation counts of a large expert pool, sparse: how many tokens selected both i and j, for
// the unordered pairs i < j that occurred. Memory grows with the distinct pairs seen (at most
// N k (k-1) / 2), never with E^2.
class CoactivationPairs {
 public:
  explicit CoactivationPairs(int64_t num_experts) : E_(num_experts) {}
  void add(const torch::Tensor& indices);  // (N, k) selected experts of N tokens
  // The `max_pairs` strongest pairs summed over the ranks of `world`, as rows (i, j, count) int64
  // (M, 3), i < j: count descending, ties by (i, j) ascending — the same on every rank.
  torch::Tensor strongest(int64_t max_pairs, parallel::Communicator& world);

 private:
  int64_t E_;
  torch::Tensor ids_, counts_;          // distinct pair ids i*E + j so far, and their counts (CPU int64)
  std::vector<torch::Tensor> pending_;  // pair ids not yet merged
  int64_t pending_size_ = 0;
  void merge();
};

}  // namespace some::train
