#include "src/model/expert_shard.h"

#include "common/check.h"
#include "common/errors.h"
#include "src/model/feed_forward.h"
#include "src/model/init.h"

namespace some::model {

ExpertShardImpl::ExpertShardImpl(int64_t layer, int64_t first, int64_t count, int64_t d_model,
                                 int64_t d_expert, const ExpertOptions& opts, uint64_t seed)
    : first_expert(first), activation_(opts.activation) {
  torch::NoGradGuard no_grad;
  auto down = torch::empty({count, d_expert, d_model});
  auto up = torch::empty({count, d_model, d_expert});
  for (int64_t i = 0; i < count; ++i) {
    auto g_down = seeded_generator(seed, layer, first + i, InitStream::kExpertDown);
    auto g_up = seeded_generator(seed, layer, first + i, InitStream::kExpertUp);
    down[i].copy_(init_expert_matrix(d_expert, d_model, opts.init, opts.sparsity, g_down));
    up[i].copy_(init_expert_matrix(d_model, d_expert, opts.init, opts.sparsity, g_up));
  }
  // Buffers, not parameters: never in an optimizer, never given a gradient.
  w_down = register_buffer("w_down", down);
  w_up = register_buffer("w_up", up);
}

torch::Tensor ExpertShardImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& counts) {
  SOME_REQUIRE(static_cast<int64_t>(counts.size()) == w_down.size(0), Error,
               "expert counts for {} experts, shard holds {}", counts.size(), w_down.size(0));
  std::vector<torch::Tensor> outs;
  int64_t offset = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) continue;
    auto xe = x.narrow(0, offset, counts[e]);                                   // (M_e, d)
    auto h = activate(torch::matmul(xe, w_down[e].t()), activation_);           // (M_e, h)
    outs.push_back(torch::matmul(h, w_up[e].t()));                              // (M_e, d)
    offset += counts[e];
  }
  SOME_REQUIRE(offset == x.size(0), Error, "expert counts sum to {}, got {} rows", offset, x.size(0));
  if (outs.empty()) return torch::zeros_like(x);
  return outs.size() == 1 ? outs.front() : torch::cat(outs);
}

torch::Tensor ExpertShardImpl::forward_naive(const torch::Tensor& x, const torch::Tensor& expert_of) {
  std::vector<torch::Tensor> rows;
  for (int64_t m = 0; m < x.size(0); ++m) {
    auto e = expert_of[m].item<int64_t>() - first_expert;
    auto h = activate(torch::mv(w_down[e], x[m]), activation_);
    rows.push_back(torch::mv(w_up[e], h));
  }
  return rows.empty() ? torch::zeros_like(x) : torch::stack(rows);
}

}  // namespace some::model
