#include "src/model/init.h"

#include <cmath>

#include "common/check.h"
#include "common/errors.h"
#include "common/random.h"

namespace some::model {

at::Generator seeded_generator(uint64_t seed, int64_t layer, int64_t expert, InitStream stream) {
  return at::make_generator<at::CPUGeneratorImpl>(
      hash_u64(seed, static_cast<uint64_t>(layer), static_cast<uint64_t>(expert), static_cast<uint64_t>(stream)));
}

torch::Tensor init_expert_matrix(int64_t rows, int64_t cols, ExpertInit method, double sparsity,
                                 at::Generator& gen) {
  const double fan_in = static_cast<double>(cols);
  if (method == ExpertInit::kDefault) {
    // nn.Linear's Kaiming-uniform(a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    const double bound = 1.0 / std::sqrt(fan_in);
    return torch::rand({rows, cols}, gen, torch::kFloat32) * (2 * bound) - bound;
  }
  if (method == ExpertInit::kOrthogonal) {
    // QR of a Gaussian matrix, sign-corrected so the result is uniformly distributed.
    bool tall = rows >= cols;
    auto a = torch::randn({tall ? rows : cols, tall ? cols : rows}, gen, torch::kFloat32);
    auto [q, r] = torch::linalg_qr(a);
    q = q * torch::sign(torch::diagonal(r)).unsqueeze(0);
    return tall ? q.contiguous() : q.t().contiguous();
  }
  {  // ExpertInit::kSparse
    // Exactly round(sparsity * numel) zeros; the kept weights are N(0, 1/fan_in) rescaled by
    // 1/sqrt(keep) so the matrix keeps the variance of a dense one.
    const int64_t numel = rows * cols;
    const auto zeros = static_cast<int64_t>(std::llround(sparsity * static_cast<double>(numel)));
    const double keep = std::max(1.0 - sparsity, 1e-12);
    auto w = torch::randn({numel}, gen, torch::kFloat32) / std::sqrt(fan_in * keep);
    auto drop = torch::randperm(numel, gen, torch::kLong).narrow(0, 0, zeros);
    w.index_fill_(0, drop, 0.0);
    return w.view({rows, cols});
  }
}

torch::Tensor init_keys(int64_t E, int64_t d, uint64_t seed, int64_t layer) {
  auto keys = torch::empty({E, d}, torch::kFloat32);
  for (int64_t i = 0; i < E; ++i) {
    auto gen = seeded_generator(seed, layer, i, InitStream::kKey);
    auto key = torch::randn({d}, gen, torch::kFloat32);
    keys[i].copy_(key / key.norm());
  }
  return keys;
}

}  // namespace some::model
