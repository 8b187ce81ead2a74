#include "src/model/hash_router.h"

#include "common/check.h"
#include "common/errors.h"
#include "common/random.h"

namespace some::model {

HashRouter::HashRouter(const ModelOptions& opts, int64_t layer)
    : top_k_(opts.top_k), table_(hash_routing_table(opts.vocab_size, opts.num_experts, opts.top_k, opts.seed, layer)) {}

Routing HashRouter::route(const torch::Tensor& x, const torch::Tensor& token_ids, bool /*training*/) {
  SOME_REQUIRE(token_ids.defined() && token_ids.numel() == x.size(0), Error,
               "hash routing needs the token id of each of the {} rows", x.size(0));
  if (table_.device() != x.device()) table_ = table_.to(x.device());
  Routing out;
  out.indices = table_.index_select(0, token_ids.reshape({-1}));             // (N, k)
  out.gates = torch::full(out.indices.sizes(), 1.0 / static_cast<double>(top_k_), x.options());
  return out;
}

torch::Tensor hash_routing_table(int64_t vocab, int64_t num_experts, int64_t top_k, uint64_t seed, int64_t layer) {
  SOME_REQUIRE(top_k <= num_experts, ConfigError, "model.top_k = {} exceeds model.num_experts = {}", top_k,
               num_experts);
  auto table = torch::empty({vocab, top_k}, torch::kLong);
  auto t = table.accessor<int64_t, 2>();
  for (int64_t token = 0; token < vocab; ++token) {
    for (int64_t j = 0; j < top_k; ++j) {
      auto e = static_cast<int64_t>(to_range(hash_u64(seed, static_cast<uint64_t>(layer), static_cast<uint64_t>(token),
                                                      static_cast<uint64_t>(j)),
                                             static_cast<uint64_t>(num_experts)));
      auto taken = [&](int64_t c) {
        for (int64_t i = 0; i < j; ++i) if (t[token][i] == c) return true;
        return false;
      };
      while (taken(e)) e = (e + 1) % num_experts;
      t[token][j] = e;
    }
  }
  return table;
}

}  // namespace some::model
